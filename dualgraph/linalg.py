"""dg.linalg: torch.linalg's names and meanings, batched over leading dims, with gradients.

    import dualgraph as dg
    x = dg.linalg.solve(A, b)
    U, S, Vh = dg.linalg.svd(A, full_matrices=False)

The ops live in dualgraph/ops/linalg.py (one record each, forward on the backend's LAPACK). Conventions
to know when comparing with other libraries:
  - qr: LAPACK's Householder QR (as numpy and PyTorch): R's diagonal may be negative; Q and R are unique
    only up to those signs.
  - svd / eigh: each singular-vector pair (u_i, v_i) and each eigenvector is unique only up to sign (and up
    to a rotation within a repeated value). S is descending, eigh's eigenvalues ascending. Their gradients
    are defined for distinct values; functions that do not depend on the signs (U diag(S) Vh, projectors
    v v^T, the values themselves) are the meaningful things to differentiate.
  - eigh reads only the triangle UPLO of its input, and its gradient (like PyTorch's) is not symmetrised:
    differentiate a function of a symmetric matrix.
ONNX export: det, slogdet (float32, ONNX Det), the vector norms and the 'fro'/1/inf matrix norms lower to
ONNX; inv, solve, cholesky, qr, svd, eigh, pinv (and the norms built on svd) have no ONNX operator and
name themselves in the export error.
"""
from .ops.linalg import (LinAlgError, cholesky, cond, cross, det, eigh, eigvalsh, inv, lstsq, matmul,  # noqa: F401
                         matrix_norm, matrix_power, matrix_rank, multi_dot, norm, pinv, qr, slogdet, solve,
                         solve_triangular, svd, svdvals, vecdot, vector_norm)
from .ops.linalg import linalg_diagonal as diagonal  # noqa: F401

__all__ = ["LinAlgError", "cholesky", "cond", "cross", "det", "eigh", "eigvalsh", "inv", "lstsq", "matmul",
           "matrix_norm", "matrix_power", "matrix_rank", "multi_dot", "norm", "pinv", "qr", "slogdet", "solve",
           "solve_triangular", "svd", "svdvals", "vecdot", "vector_norm", "diagonal"]
