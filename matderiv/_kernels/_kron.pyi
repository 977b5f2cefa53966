import numpy as np

def scatter_dense(
    x: np.ndarray, out: np.ndarray, R: int, K: int, off_mult: int, stride: int,
    value_per_row: bool, zero_first: bool, n_threads: int,
) -> None: ...
def sparse_rows(
    x: np.ndarray, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, row_of: np.ndarray,
    R: int, contiguous: bool, n_threads: int,
) -> None: ...
def sparse_cols(
    x: np.ndarray, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray,
    R: int, contiguous: bool, n_threads: int,
) -> None: ...
