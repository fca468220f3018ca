r"""Arnoldi process: an orthonormal basis of :math:`\mathcal K_m(A, v)` and the Hessenberg matrix
:math:`H_m = Q_m^\top AQ_m`, from products with :math:`A` only (a callable, never a matrix).

Two paths of one recurrence (see :func:`arnoldi`): a preallocated block without autograd (classical
Gram--Schmidt in place) and a differentiable list (modified Gram--Schmidt), both with selective
re-orthogonalisation driven by a running bound on the loss of orthogonality
(:data:`ORTHOGONALITY_BUDGET`).  Used by :func:`flowlearn.solvers.krylov_phi` and by the closed-form
gradients of :mod:`flowlearn.learning`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .._checks import UserInputError, check_int

__all__ = ["ArnoldiResult", "ORTHOGONALITY_BUDGET", "arnoldi"]

Matvec = Callable[[torch.Tensor], torch.Tensor]

#: Selective re-orthogonalisation from a running estimate of the loss of orthogonality, shared by both
#: paths.  With a basis orthonormal up to :math:`E = Q^\top Q - I`, one Gram--Schmidt projection of
#: :math:`w_{in}` leaves :math:`Q^\top w_{out} = -Eh + O(j\varepsilon)\|w_{in}\|` with
#: :math:`\|h\|^2 = \|w_{in}\|^2-\|w_{out}\|^2`, so the new vector's loss of orthogonality is at most
#: :math:`\|E\|\sqrt{r^2-1} + j\varepsilon r`, :math:`r = \|w_{in}\|/\|w_{out}\|` (Daniel, Gragg, Kaufman,
#: Stewart 1976; Giraud, Langou, Rozložník 2005).  :func:`arnoldi` carries this bound along the steps and
#: makes a second pass ("twice is enough") only when the bound would exceed ``ORTHOGONALITY_BUDGET``
#: times the unit roundoff: the basis stays orthonormal to about :math:`10^3\varepsilon` (2e-13 in
#: float64) for any spectrum, while the smoothly decaying Krylov spaces of assignment flows (norm drop
#: about 1/2 per step) need a second pass only every eighth step or so, instead of nearly every step
#: under the fixed DGKS test :math:`\|w_{out}\| < \|w_{in}\|/\sqrt2`.
ORTHOGONALITY_BUDGET = 1000.0


def _orthogonality_after(loss: float, norm_in: float, norm_out: float, j: int, eps: float) -> float:
    """Bound on the loss of orthogonality of ``w_out / |w_out|`` (see :data:`ORTHOGONALITY_BUDGET`)."""
    r = norm_in / max(norm_out, torch.finfo(torch.float64).tiny)
    return loss * math.sqrt(max(r * r - 1.0, 0.0)) + (j + 1) * eps * r


@dataclass
class ArnoldiResult:
    """Orthonormal Krylov basis and Hessenberg matrix.

    Attributes
    ----------
    basis : list of tensors
        ``m`` orthonormal vectors :math:`q_1..q_m` (each of the start vector's shape).  On the
        no-autograd path they are views of the rows of one preallocated block.
    hessenberg : tensor ``(m, m)``
        :math:`H_m = Q_m^\\top A Q_m`.
    h_next : float
        :math:`h_{m+1,m}` (0 after a breakdown).
    q_next : tensor or None
        :math:`q_{m+1}` (``None`` after a breakdown).
    beta : tensor
        :math:`\\|v\\|`.
    breakdown : bool
        ``True`` if the Krylov space became invariant (happy breakdown): then
        :math:`A Q_m = Q_m H_m` exactly and the approximation is exact.
    stats : dict
        ``path`` (``"autograd"``: modified Gram--Schmidt on a list, or ``"block"``: classical
        Gram--Schmidt on a preallocated block, see :func:`arnoldi`) and ``reorthogonalizations``
        (number of second passes).
    """

    basis: list
    hessenberg: torch.Tensor
    h_next: float
    q_next: torch.Tensor | None
    beta: torch.Tensor
    breakdown: bool
    stats: dict = field(default_factory=dict)
    _block: torch.Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def dim(self) -> int:
        return len(self.basis)

    def combine(self, coeffs: torch.Tensor) -> torch.Tensor:
        """:math:`Q_m c` for coefficients ``c`` of length ``m``."""
        if self._block is not None:  # one matrix-vector product with the (m, n) block
            return (coeffs.to(self._block.dtype) @ self._block).view(self.basis[0].shape)
        out = coeffs[0] * self.basis[0]
        for c, q in zip(coeffs[1:], self.basis[1:]):
            out = out + c * q
        return out


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.dot(a.reshape(-1), b.reshape(-1))


def arnoldi(matvec: Matvec, v: torch.Tensor, m: int, *, breakdown_tol: float | None = None) -> ArnoldiResult:
    r"""Arnoldi process with selective re-orthogonalisation (:data:`ORTHOGONALITY_BUDGET`).

    Two implementations of the same recurrence, chosen automatically:

    * **block** (no autograd): the basis lives in one preallocated ``(m + 1, n)`` block and each step is
      classical Gram--Schmidt, :math:`h = Q_j^\top w,\ w \leftarrow w - Q_jh`, i.e. two matrix--vector
      products instead of :math:`2j` vector updates, with a second pass when the criterion asks for it.
    * **autograd**: modified Gram--Schmidt on a Python list without in-place writes, so that
      autograd can differentiate through the basis and :math:`H_m`.

    Rule: the product :math:`w_1 = Aq_1` is formed first; the autograd path is taken iff
    ``torch.is_grad_enabled()`` and ``v`` or :math:`w_1` requires grad (:math:`A` depending on
    parameters that require grad shows up in :math:`w_1`, since ``matvec`` is linear and fixed).
    Both paths span the same space and give the same :math:`H_m` up to rounding.

    Parameters
    ----------
    matvec : callable
        :math:`x \mapsto Ax` on tensors of ``v``'s shape.
    v : tensor
        Start vector (any shape; flattened implicitly), must be non-zero.
    m : int
        Maximal Krylov dimension.
    breakdown_tol : float, optional
        Relative breakdown test: stop when :math:`h_{j+1,j} \le` ``breakdown_tol`` :math:`\cdot\|Aq_j\|`.
        Default: ``100 * eps`` of the dtype.

    Returns
    -------
    ArnoldiResult

    Raises
    ------
    ValueError
        For ``v = 0``, or when ``matvec`` starts requiring grad after a first product that did not.

    References
    ----------
    Daniel, Gragg, Kaufman, Stewart, *Reorthogonalization and stable algorithms for updating the
    Gram--Schmidt QR factorization*, Math. Comp. 30 (1976); Giraud, Langou, Rozložník, *The loss of
    orthogonality in the Gram--Schmidt orthogonalization process*, Comput. Math. Appl. 50 (2005).
    """
    m = check_int("m", m, minimum=1)
    if breakdown_tol is None:
        breakdown_tol = 100 * torch.finfo(v.dtype).eps
    beta = torch.linalg.vector_norm(v)
    if float(beta.detach()) == 0.0:
        raise UserInputError("arnoldi needs a non-zero start vector v")
    q1 = v / beta
    w1 = matvec(q1)
    if torch.is_grad_enabled() and (v.requires_grad or w1.requires_grad):
        return _arnoldi_autograd(matvec, q1, w1, beta, m, breakdown_tol)
    shape = q1.shape
    Q = torch.empty(m + 1, q1.numel(), dtype=q1.dtype, device=q1.device)
    Q[0] = q1.reshape(-1)
    Q[1] = w1.reshape(-1)  # the first product waits in the free row; no other copy stays alive
    del q1, w1
    return _arnoldi_block(matvec, Q, shape, beta, m, breakdown_tol)


def _is_breakdown(norm_w: float, norm_in: float, tol: float, dtype: torch.dtype) -> bool:
    return norm_w <= tol * max(norm_in, torch.finfo(dtype).tiny)


def _arnoldi_autograd(matvec, q1, w1, beta, m, tol) -> ArnoldiResult:
    """Modified Gram--Schmidt on a list, no in-place writes (differentiable)."""
    basis = [q1]
    cols: list[torch.Tensor] = []  # columns of H (length j+2 each)
    h_next, q_next, breakdown, reorth = 0.0, None, False, 0
    eps, loss = torch.finfo(q1.dtype).eps, 0.0
    for j in range(m):
        w = w1 if j == 0 else matvec(basis[j])
        norm_in = torch.linalg.vector_norm(w)
        h = []
        for q in basis:
            c = _dot(q, w)
            w = w - c * q
            h.append(c)
        norm_w = torch.linalg.vector_norm(w)
        new = _orthogonality_after(loss, float(norm_in.detach()), float(norm_w.detach()), j, eps)
        if new > ORTHOGONALITY_BUDGET * eps:
            reorth += 1
            norm_mid = float(norm_w.detach())
            for i, q in enumerate(basis):
                c = _dot(q, w)
                w = w - c * q
                h[i] = h[i] + c
            norm_w = torch.linalg.vector_norm(w)
            new = _orthogonality_after(loss, norm_mid, float(norm_w.detach()), j, eps)
        loss = max(loss, new)
        h.append(norm_w)
        cols.append(torch.stack(h))
        if _is_breakdown(float(norm_w.detach()), float(norm_in.detach()), tol, q1.dtype):
            breakdown = True
            break
        if j + 1 < m:
            basis.append(w / norm_w)
        else:
            h_next, q_next = float(norm_w.detach()), w / norm_w
    k = len(cols)
    # build H column by column without in-place writes, so that autograd works
    H = torch.stack([torch.nn.functional.pad(col, (0, k + 1 - col.numel())) for col in cols], 1)
    return ArnoldiResult(basis=basis[:k], hessenberg=H[:k, :k], h_next=h_next, q_next=q_next, beta=beta,
                         breakdown=breakdown, stats={"path": "autograd", "reorthogonalizations": reorth,
                                                        "orthogonality_bound": loss})


def _arnoldi_block(matvec, Q, shape, beta, m, tol) -> ArnoldiResult:
    """Classical Gram--Schmidt with selective second pass on the preallocated ``(m + 1, n)`` block ``Q``
    (row 0: :math:`q_1`, row 1: :math:`Aq_1`).

    The free row ``j + 1`` is the work vector of step ``j``: the product is copied there and
    Gram--Schmidt runs in place, so a step needs no storage beyond the block and the product itself.
    """
    dtype = Q.dtype
    H = torch.zeros(m + 1, m, dtype=dtype, device=Q.device)
    k, breakdown, reorth = m, False, 0
    eps, loss = torch.finfo(dtype).eps, 0.0
    for j in range(m):
        w = Q[j + 1]
        if j > 0:
            product = matvec(Q[j].view(shape))
            if product.requires_grad and torch.is_grad_enabled():
                raise UserInputError(f"matvec returned a tensor that requires grad at step {j + 1} although its "
                                 "first product did not: arnoldi cannot differentiate through such a matvec")
            w.copy_(product.reshape(-1))
            del product
        Qj = Q[: j + 1]
        norm_in = float(torch.linalg.vector_norm(w))
        h = Qj @ w
        w.addmv_(Qj.T, h, alpha=-1)
        norm_w = torch.linalg.vector_norm(w)
        new = _orthogonality_after(loss, norm_in, float(norm_w), j, eps)
        if new > ORTHOGONALITY_BUDGET * eps:
            reorth += 1
            norm_mid = float(norm_w)
            h2 = Qj @ w
            w.addmv_(Qj.T, h2, alpha=-1)
            h = h + h2
            norm_w = torch.linalg.vector_norm(w)
            new = _orthogonality_after(loss, norm_mid, float(norm_w), j, eps)
        loss = max(loss, new)
        H[: j + 1, j] = h
        H[j + 1, j] = norm_w
        if _is_breakdown(float(norm_w), norm_in, tol, dtype):
            k, breakdown = j + 1, True
            break
        w.div_(norm_w)
    block = Q[:k]
    h_next = 0.0 if breakdown else float(H[m, m - 1])
    q_next = None if breakdown else Q[m].view(shape)
    return ArnoldiResult(basis=list(block.view(k, *shape).unbind(0)), hessenberg=H[:k, :k], h_next=h_next,
                         q_next=q_next, beta=beta, breakdown=breakdown,
                         stats={"path": "block", "reorthogonalizations": reorth, "orthogonality_bound": loss},
                         _block=block)
