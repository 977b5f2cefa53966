import numpy as np

def unfold(
    x: np.ndarray, out: np.ndarray, lo: int, kernel: tuple[int, int], stride: tuple[int, int],
    padding: tuple[int, int], dilation: tuple[int, int], OH: int, OW: int, n_threads: int,
) -> None: ...
