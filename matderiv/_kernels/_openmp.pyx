"""What the OpenMP runtime says about threads (1 when built serially), the size below
which kernels run on the calling thread, and how often each kernel started a team."""
from ._types cimport MATDERIV_HAVE_OPENMP, omp_get_max_threads, omp_get_thread_limit

#: The threshold until MATDERIV_SERIAL_BELOW_BYTES or set_serial_below_bytes changes it.
DEFAULT_SERIAL_BELOW_BYTES = 1 << 20

#: The kernels counted by kernel_calls(), in the order of the Kernel enum (_openmp.pxd).
KERNELS = ("outer", "row_dots", "gram_sq", "outer_norms", "clip_rows", "kron_dense", "kron_csr", "conv_unfold", "group_sums", "toeplitz")

# Kernels that write fewer bytes than this run on the calling thread: waking a team costs
# more than it saves there, and no idle team is left spinning while BLAS works.
cdef Py_ssize_t _serial_below = DEFAULT_SERIAL_BELOW_BYTES
cdef Py_ssize_t _calls[N_KERNELS]  # zero-initialised (static storage)
cdef Py_ssize_t _threaded[N_KERNELS]


cdef bint use_team(Kernel kernel, Py_ssize_t nbytes, int n_threads) noexcept:
    """Whether a kernel call that writes `nbytes` starts a team of n_threads: only with
    OpenMP, more than one thread and at least the threshold to write. Counts the
    call; called with the GIL held, before the kernel's nogil region."""
    cdef bint team = MATDERIV_HAVE_OPENMP and n_threads > 1 and nbytes >= _serial_below
    _calls[<int>kernel] += 1
    _threaded[<int>kernel] += team
    return team


def have_openmp():
    """True when the kernels were compiled with OpenMP."""
    return bool(MATDERIV_HAVE_OPENMP)


def max_threads():
    """omp_get_max_threads(): OMP_NUM_THREADS if set, else the available cores."""
    return omp_get_max_threads()


def thread_limit():
    """omp_get_thread_limit(): OMP_THREAD_LIMIT if set, else the runtime's own bound."""
    return omp_get_thread_limit()


def get_serial_below_bytes():
    """The threshold in bytes: kernel calls that write less run on the calling thread."""
    return _serial_below


def set_serial_below_bytes(Py_ssize_t nbytes):
    """Set the threshold (checked by the caller: matderiv.set_serial_below_bytes); return
    the previous one."""
    global _serial_below
    previous = _serial_below
    _serial_below = nbytes
    return previous


def kernel_calls():
    """{kernel: (calls, threaded)}: the calls that reached a kernel's loop since the kernels
    loaded (empty inputs return before it), and those that started a team. Counts only
    grow (a forked child starts from its parent's): compare two snapshots."""
    return {name: (_calls[k], _threaded[k]) for k, name in enumerate(KERNELS)}
