"""Docstring entries that many public functions share (flush left, numpydoc)."""
import textwrap

X = """X : array_like, shape (B, m) or (B, T, m)
    The layer's inputs: one row x_b per sample, or a sequence of T steps per sample."""

STRUCTURED_X = """A `Conv` (a convolution's patches) or an `Embedding` (a lookup) may stand for X;
W then has the kernel's shape (O, C) + kernel or the table's (V, d), and so do the
weight results (per-sample ones with a leading B; an Embedding's per-sample
gradients come as a sparse (B, V d) matrix)."""

G = """G : array_like, shape (B, n) or (B, T, n)
    The upstream gradients dL/df, with X's number of dimensions, batch size B and
    (3-D) sequence length T."""

CONVENTION = """convention : {"Wx", "xW"}, default "Wx"
    The layer's layout: "Wx" for f = W @ x with W of shape (n, m), "xW" for
    f = x @ W with W of shape (m, n)."""

BIAS = """bias : bool, default False
    Also return the bias gradient's result (for f = W @ x + c, dL/dc = g), of
    shape (n,) or (B, n)."""

MAX_BYTES = """max_bytes : int, optional
    Upper bound, in bytes, on what the call allocates (its outputs, and any copy of
    the inputs it must make).  None: the memory available to the process, read from
    the MATDERIV_MAX_BYTES environment variable when set, else from the machine and
    its cgroup limits."""

N_THREADS = """n_threads : int, optional
    Threads for matderiv's own kernels: None uses OpenMP's default (OMP_NUM_THREADS),
    -1 every usable core, k >= 1 k threads.  Matrix products run in numpy's BLAS,
    whose own thread settings apply."""

def indented(text: str) -> str:
    """text for a place indented by four spaces (an entry's description)."""
    return text.replace("\n", "\n    ")


DTYPE_RULE = """The result dtype is float32 when X and G are both float32 (float16 counts as
float32), else float64; integer and bool inputs count as float64."""



def raises(wrong_type: str, wrong_value: str) -> str:
    """The Raises entries of a batched function: its options' wrong types and values."""

    def entry(text: str) -> str:
        return textwrap.fill(text, 84, initial_indent="    ", subsequent_indent="    ")

    return f"""TypeError
{entry(f"If X or G is complex, masked, of an unsupported dtype or not convertible to an array, or if {wrong_type}.")}
ValueError
{entry(f"If X and G are not both 2-D or both 3-D or their batch sizes (or sequence lengths) differ, or if {wrong_value}.")}
OutputTooLargeError
    If the outputs, with the copies of the inputs the call needs, exceed max_bytes
    (raised before anything is allocated)."""


GRADIENT = """Sample b's weight gradient is g_b = outer(G[b], X[b]) for "Wx" (shape (n, m);
its transpose for "xW"), and for sequences the sum over steps,
g_b = sum_t outer(G[b, t], X[b, t]); its bias gradient is db_b = sum_t G[b, t]."""

DASK = """Dask arrays chunked along B are accepted as well: the call then returns lazy
dask arrays (see `matderiv.dask`)."""
