import numpy as np

def group_sums(
    keys: np.ndarray, order: np.ndarray, ptr: np.ndarray, rows: np.ndarray, scale: np.ndarray,
    gptr: np.ndarray, out: np.ndarray, sq: np.ndarray, n_threads: int,
) -> None: ...
