import numpy as np

def row_dots(a: np.ndarray, b: np.ndarray, out: np.ndarray, n_threads: int) -> None: ...
def clip_rows(
    a: np.ndarray, b: np.ndarray, a_shift: float, b_shift: float, max_norm: float,
    scaled: np.ndarray, norms: np.ndarray, factor: np.ndarray, n_threads: int,
) -> None: ...
