"""Convolution patches (im2col) of float32 or float64 inputs, each output byte written once:

    out[b - lo, oh * OW + ow, (c * k1 + i) * k2 + j] = x[b, c, oh s1 - p1 + i d1, ow s2 - p2 + j d2]

zero where the index falls in the padding (written inline: no separate zeroing pass).
1-D convolutions are the case H = 1, k1 = s1 = d1 = 1, p1 = 0."""
from cython cimport floating
from cython.parallel cimport prange

from ._openmp cimport CONV_UNFOLD, use_team


cdef inline Py_ssize_t _first_inside(Py_ssize_t start, Py_ssize_t step, Py_ssize_t size, Py_ssize_t k) noexcept nogil:
    """The first j in [0, k] with 0 <= start + j * step (step >= 1), for start < size."""
    if start >= 0:
        return 0
    return min(k, (step - 1 - start) // step)


cdef inline Py_ssize_t _end_inside(Py_ssize_t start, Py_ssize_t step, Py_ssize_t size, Py_ssize_t k) noexcept nogil:
    """The first j in [0, k] with start + j * step >= size (step >= 1)."""
    if start >= size:
        return 0
    return min(k, (size - start + step - 1) // step)


cdef inline void _interior(
    const floating *src, floating *o, Py_ssize_t C, Py_ssize_t k1, Py_ssize_t k2,
    Py_ssize_t row_step, Py_ssize_t channel_step,
) noexcept nogil:
    """A patch wholly inside the input, kernel rows contiguous (d2 = 1): per channel and
    kernel row, k2 consecutive entries from src (the patch's first entry of channel 0),
    rows row_step apart, channels channel_step apart; no bounds to check."""
    cdef Py_ssize_t c, i, j
    cdef const floating *s
    for c in range(C):
        s = src + c * channel_step
        for i in range(k1):
            if k2 == 3:  # the common 3-wide row: three stores, no loop
                o[0] = s[0]
                o[1] = s[1]
                o[2] = s[2]
            else:
                for j in range(k2):
                    o[j] = s[j]
            o += k2
            s += row_step


cdef inline void _patch(
    const floating *xb, floating *o, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t C, Py_ssize_t H,
    Py_ssize_t W, Py_ssize_t k1, Py_ssize_t k2, Py_ssize_t s1, Py_ssize_t s2,
    Py_ssize_t p1, Py_ssize_t p2, Py_ssize_t d1, Py_ssize_t d2,
) noexcept nogil:
    """The patch at output position (oh, ow) of one sample (xb: its (C, H, W) input), its
    C k1 k2 entries written in order from o: per channel and kernel row, zeros left of the
    input, the input's entries, zeros right of it."""
    cdef Py_ssize_t c, i, j, ih, w0 = ow * s2 - p2, h0 = oh * s1 - p1
    cdef Py_ssize_t jlo = _first_inside(w0, d2, W, k2)
    cdef Py_ssize_t jhi = max(jlo, _end_inside(w0, d2, W, k2))
    cdef const floating *src
    if d2 == 1 and jlo == 0 and jhi == k2 and h0 >= 0 and h0 + (k1 - 1) * d1 < H:
        _interior(xb + h0 * W + w0, o, C, k1, k2, d1 * W, H * W)
        return
    for c in range(C):
        for i in range(k1):
            ih = oh * s1 - p1 + i * d1
            if ih < 0 or ih >= H:
                for j in range(k2):
                    o[j] = 0
            else:
                src = xb + (c * H + ih) * W
                for j in range(jlo):
                    o[j] = 0
                for j in range(jlo, jhi):
                    o[j] = src[w0 + j * d2]
                for j in range(jhi, k2):
                    o[j] = 0
            o += k2


def unfold(
    const floating[:, :, :, ::1] x,   # IN  (B, C, H, W)
    floating[:, :, ::1] out,          # OUT (hi - lo, OH * OW, C * k1 * k2): the patches of samples [lo, hi)
    Py_ssize_t lo,
    tuple kernel, tuple stride, tuple padding, tuple dilation,  # (k1, k2), (s1, s2), (p1, p2), (d1, d2)
    Py_ssize_t OH, Py_ssize_t OW,
    int n_threads,
):
    """The patches of samples lo, lo + 1, ... of x into `out` (checked by the caller: the
    geometry, 0 <= lo, lo + len(out) <= B); OpenMP over every (sample, position) pair, in
    contiguous runs (static schedule): samples when the batch is large, positions when small."""
    cdef Py_ssize_t nb = out.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t k1 = kernel[0], k2 = kernel[1], s1 = stride[0], s2 = stride[1]
    cdef Py_ssize_t p1 = padding[0], p2 = padding[1], d1 = dilation[0], d2 = dilation[1]
    cdef Py_ssize_t F = C * k1 * k2, T = OH * OW, r, b, t, oh
    if nb == 0 or T == 0 or F == 0:
        return
    cdef Py_ssize_t sample = C * H * W
    cdef const floating *x0 = NULL  # an input of no entries is all padding: never read
    if sample > 0:
        x0 = &x[lo, 0, 0, 0]
    cdef floating *o0 = &out[0, 0, 0]
    cdef bint threaded = use_team(CONV_UNFOLD, nb * T * F * <Py_ssize_t>sizeof(floating), n_threads)
    for r in prange(nb * T, schedule="static", nogil=True, num_threads=n_threads, use_threads_if=threaded):
        b = r // T
        t = r - b * T
        oh = t // OW
        _patch(x0 + b * sample, o0 + r * F, oh, t - oh * OW, C, H, W, k1, k2, s1, s2, p1, p2, d1, d2)
