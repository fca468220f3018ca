r"""Loss (3.4), regularizer (3.5) and the learning problem of paper 000, Sect. 3.

For ground truth :math:`j^*(i)` (one-hot :math:`W^*`) and the tangent vector :math:`V_T(\Omega)`,

.. math:: f_L(V_T) = \mathrm{KL}\big(W^*, \mathrm{Exp}_{W_0}(V_T)\big)
          = -\frac1I\sum_i \log\mathrm{softmax}(JV_T)_{i,j^*(i)},
          \qquad \partial_V f_L = \frac JI\big(\mathrm{softmax}(JV_T) - W^*\big),

.. math:: \mathcal R(\Omega) = \frac\tau2\sum_i\|\Pi_0\log\Omega_i|_{\mathcal N}\|^2,
          \qquad \partial_{\Omega_i}\mathcal R = \tau\,\frac{\Pi_0\log\Omega_i}{\Omega_i}\quad\text{(Lemma 3.7)},

and :math:`\mathcal L(\Omega) = f_L(V_T(\Omega)) + \mathcal R(\Omega)`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .._checks import UserInputError, UserTypeError, as_tensor, check_finite, check_positive
from ..geometry import proj_tangent
from ..graphs import GridWeights, WeightOperator
from ..graphs.weights import SparsePattern
from ..labeling import distance_matrix
from ..labeling.data_term import check_distances
from ..linearized import LinearizedSystem, LowRank, linearized_flow

__all__ = ["LearningProblem", "LossEvaluation", "assignment_kl", "assignment_kl_grad", "patch_regularizer",
           "patch_regularizer_grad"]


def assignment_kl(V: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""Loss (3.4) :math:`-\frac1I\sum_i\log\mathrm{softmax}(JV)_{i,j^*(i)}` of the tangent vector ``V`` ``(I, J)``
    and the ground truth ``labels`` ``(I,)``, differentiable in ``V``."""
    J = V.shape[1]
    logp = torch.log_softmax(J * V, dim=-1)
    return -logp.gather(1, labels.view(-1, 1)).mean()


def assignment_kl_grad(V: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r""":math:`\partial_V f_L = \frac JI(\mathrm{softmax}(JV) - W^*)`, shape ``(I, J)``."""
    I, J = V.shape
    onehot = torch.nn.functional.one_hot(labels, J).to(dtype=V.dtype, device=V.device)
    return (J / I) * (torch.softmax(J * V, dim=-1) - onehot)


def patch_regularizer(patches: torch.Tensor, tau: float) -> torch.Tensor:
    r"""Regularizer (3.5): :math:`\frac\tau2\sum_i\|\Pi_0\log p_i\|^2` for patches ``(I, N)``."""
    return 0.5 * tau * proj_tangent(torch.log(patches)).pow(2).sum()


def patch_regularizer_grad(patches: torch.Tensor, tau: float) -> torch.Tensor:
    r""":math:`\partial_p\mathcal R = \tau\,\Pi_0\log p / p` (Lemma 3.7), shape ``(I, N)``."""
    return tau * proj_tangent(torch.log(patches)) / patches


@dataclass
class LossEvaluation:
    r"""Loss :math:`\mathcal L = f_L + \mathcal R` (``loss``, ``data_loss``, ``regularization``) and the
    Euclidean gradient ``grad`` :math:`\partial_p\mathcal L` ``(I, N)`` at one set of weight patches, with the
    ``tangent`` :math:`V_T` ``(I, J)``, the ``method`` and its ``stats`` (``seconds``, Krylov dimensions, ...)."""

    loss: float
    data_loss: float
    regularization: float
    grad: torch.Tensor
    tangent: torch.Tensor
    method: object
    stats: dict = field(default_factory=dict)


@dataclass
class LearningProblem:
    r"""One image to learn weight patches on: :math:`\mathcal L(\Omega) = f_L(V_T(\Omega)) + \mathcal R(\Omega)`.

    ``weights``: the neighbourhood structure (its own patches are the usual starting point);
    ``scaled_distances`` :math:`D/\rho` ``(I, J)``; ``labels`` ``(I,)``; ``T``: the integration time; ``tau``:
    the regularization strength :math:`\tau \ge 0`.
    """

    weights: WeightOperator
    scaled_distances: torch.Tensor
    labels: torch.Tensor
    T: float = 5.0
    tau: float = 0.0

    def stencil(self) -> SparsePattern:
        """The CSR pattern of :math:`\\Omega` and :math:`\\Omega^\\top` (built once, shared by every
        :meth:`operator`; see :meth:`flowlearn.graphs.WeightOperator.sparse_pattern`)."""
        return self.weights.sparse_pattern()

    @classmethod
    def build(cls, weights: WeightOperator, distances, labels, *, rho: float = 1.0, T: float = 5.0,
              tau: float = 0.0) -> "LearningProblem":
        """Validate the inputs (one-line errors) and scale the distances by ``rho``."""
        if not isinstance(weights, WeightOperator):
            raise UserTypeError(f"weights must be a WeightOperator, got {type(weights).__name__}")
        D = check_distances(distances, weights.num_nodes).to(dtype=weights.dtype, device=weights.device)
        rho = check_positive("rho", rho)
        lab = torch.as_tensor(labels)
        if lab.is_floating_point() or lab.is_complex() or lab.dtype == torch.bool:
            raise UserTypeError(f"labels must be integers, got dtype {lab.dtype}")
        lab = lab.reshape(-1).to(dtype=torch.long, device=weights.device)
        if lab.numel() != weights.num_nodes:
            raise UserInputError(f"labels must have {weights.num_nodes} entries (one per node), got {lab.numel()}")
        J = D.shape[1]
        if bool((lab < 0).any()) or bool((lab >= J).any()):
            raise UserInputError(f"labels must lie in 0..{J - 1} (J = {J} labels), got range "
                                 f"{int(lab.min())}..{int(lab.max())}")
        return cls(weights=weights, scaled_distances=D / rho, labels=lab, T=check_positive("T", T),
                   tau=check_positive("tau", tau, strict=False))

    @classmethod
    def from_image(cls, image, labels, prototypes, *, patch_size: int = 3, rho: float = 1.0, T: float = 5.0,
                   tau: float = 0.0, patches=None, dtype=None, device=None) -> "LearningProblem":
        """Problem for an image ``(H, W, C)`` with ground truth ``(H, W)`` and prototypes ``(J, C)``: squared
        Euclidean distances, :class:`~flowlearn.graphs.GridWeights` of ``patch_size``."""
        img = as_tensor("image", image, dtype=dtype, device=device)
        if img.ndim != 3:
            raise UserInputError(f"image must have shape (H, W, C), got {tuple(img.shape)}")
        H, W = img.shape[:2]
        lab = torch.as_tensor(labels)
        if tuple(lab.shape) != (H, W):
            raise UserInputError(f"labels must have shape {(H, W)} (the image's), got {tuple(lab.shape)}")
        weights = GridWeights(H, W, patch_size, patches=patches, dtype=img.dtype, device=img.device)
        D = distance_matrix(img, prototypes)
        return cls.build(weights, D, lab, rho=rho, T=T, tau=tau)

    @property
    def num_labels(self) -> int:
        return self.scaled_distances.shape[1]

    def check_patches(self, patches) -> torch.Tensor:
        """Patches ``(I, N)`` as a tensor in the problem's dtype/device, positive and finite."""
        p = as_tensor("patches", patches, dtype=self.weights.dtype, device=self.weights.device)
        shape = (self.weights.num_nodes, self.weights.patch_size)
        if tuple(p.shape) != shape:
            raise UserInputError(f"patches must have shape {shape}, got {tuple(p.shape)}")
        check_finite("patches", p)
        if bool((p <= 0).any()):
            raise UserInputError(f"patches must be strictly positive, got minimum {p.min().item():.3g}")
        return p

    def operator(self, patches: torch.Tensor) -> WeightOperator:
        """The weight operator with ``patches`` (differentiable)."""
        return self.weights.with_patches(patches)

    def system(self, patches: torch.Tensor) -> LinearizedSystem:
        r"""The linear system :math:`\dot V = A(\Omega)V + B(\Omega)` at the barycenter."""
        return LinearizedSystem.at(self.operator(patches), self.scaled_distances)

    def data_loss(self, V: torch.Tensor) -> torch.Tensor:
        r"""Loss (3.4) :math:`f_L(V)` of the tangent vector ``V`` ``(I, J)``; see :func:`assignment_kl`."""
        return assignment_kl(V, self.labels)

    def regularizer(self, patches: torch.Tensor) -> torch.Tensor:
        r"""Regularizer (3.5) :math:`\mathcal R` of ``patches`` ``(I, N)`` with the problem's ``tau``."""
        return patch_regularizer(patches, self.tau)

    def evaluate(self, patches, method=LowRank()) -> LossEvaluation:
        r""":math:`\mathcal L` and :math:`\partial_p\mathcal L` at ``patches`` ``(I, N)``, :math:`V_T` and its gradient
        from :func:`~flowlearn.linearized.linearized_flow` with ``method``."""
        p = self.check_patches(patches).detach().clone().requires_grad_(True)
        stats: dict = {}
        start = time.perf_counter()
        with torch.enable_grad():
            V = linearized_flow(p, self.scaled_distances, self.weights, rho=1.0, T=self.T, method=method,
                                stats=stats, check_inputs=False)
            data = self.data_loss(V)
            reg = self.regularizer(p) if self.tau > 0 else None
            (grad,) = torch.autograd.grad(data if reg is None else data + reg, p, allow_unused=True)
        if grad is None:   # V_T does not depend on the patches (e.g. B = 0)
            grad = torch.zeros_like(p)
        stats["seconds"] = time.perf_counter() - start
        reg_value = float(reg.detach()) if reg is not None else 0.0
        return LossEvaluation(loss=float(data.detach()) + reg_value, data_loss=float(data.detach()),
                              regularization=reg_value, grad=grad.detach(), tangent=V.detach(), method=method,
                              stats=stats)
