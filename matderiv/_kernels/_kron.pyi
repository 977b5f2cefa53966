import numpy as np

def kron_dense(
    P: np.ndarray, Q: np.ndarray, out: np.ndarray, r1: int, c1: int, r2: int, c2: int,
    p_eye: bool, q_eye: bool, mode: int, n_threads: int,
) -> None: ...
def kron_csr(
    Pptr: np.ndarray, Pidx: np.ndarray, Pdata: np.ndarray,
    Qptr: np.ndarray, Qidx: np.ndarray, Qdata: np.ndarray,
    r1: int, c1: int, r2: int, c2: int, p_eye: bool, q_eye: bool, S: int,
    samples_in_columns: bool, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray,
    row_of: np.ndarray, n_threads: int,
) -> None: ...
