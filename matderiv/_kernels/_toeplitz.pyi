import numpy as np

def toeplitz_fill(
    Wr: np.ndarray, ptr_h: np.ndarray, idx_h: np.ndarray, koff_h: np.ndarray,
    ptr_w: np.ndarray, idx_w: np.ndarray, koff_w: np.ndarray, mh: int, mw: int, f_order: bool,
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, row_of: np.ndarray,
    dense: np.ndarray, zeroed: bool, n_threads: int,
) -> None: ...
