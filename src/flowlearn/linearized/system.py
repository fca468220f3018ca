r"""The affine system of a linearized assignment flow (paper 000, (2.22)--(2.24)).

Linearized at :math:`V` (default the barycenter, :math:`V = 0`),

.. math:: \dot U = AU + B,\qquad AU = R_S(\Omega U),\qquad B = \tfrac1J\Pi_0 S,
          \qquad S = \mathrm{softmax}(\Omega(JV - D/\rho)),

with solution :math:`U(T) = T\varphi(TA)B`.  Row-stacked,
:math:`A^J = \mathrm{Diag}(R_S)(\Omega\otimes I_J)` and
:math:`(A^J)^\top = (\Omega^\top\otimes I_J)\mathrm{Diag}(R_S)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._checks import UserInputError
from ..geometry import proj_tangent, replicator
from ..geometry.simplex import replicator_matrix
from ..graphs import WeightOperator

__all__ = ["LinearizedSystem"]


@dataclass
class LinearizedSystem:
    r"""The affine system :math:`\dot U = AU + B` of a linearized assignment flow.

    Attributes
    ----------
    weights : WeightOperator
    S : tensor ``(I, J)``
        Similarities at the linearization point, :math:`S_k`.
    B : tensor ``(I, J)``
        :math:`\tfrac1J \Pi_0 S_k`.
    """

    weights: WeightOperator
    S: torch.Tensor
    B: torch.Tensor

    @classmethod
    def at(cls, weights: WeightOperator, scaled_distances: torch.Tensor,
           V: torch.Tensor | None = None) -> "LinearizedSystem":
        r"""Linearize at :math:`V` (default the barycenter, :math:`V=0`).

        ``scaled_distances`` is :math:`D/\rho`, shape ``(I, J)``.
        """
        J = scaled_distances.shape[1]
        logits = -scaled_distances if V is None else J * V - scaled_distances
        S = torch.softmax(weights.apply(logits), dim=-1)
        return cls(weights=weights, S=S, B=proj_tangent(S) / J)

    @property
    def num_labels(self) -> int:
        return self.S.shape[1]

    def matvec(self, U: torch.Tensor) -> torch.Tensor:
        r""":math:`AU = R_{S}(\Omega U)`."""
        return replicator(self.S, self.weights.apply(U))

    def rmatvec(self, U: torch.Tensor) -> torch.Tensor:
        r""":math:`A^\top U = \Omega^\top R_{S}(U)` (the replicator is symmetric)."""
        return self.weights.apply_transpose(replicator(self.S, U))

    def dense(self) -> torch.Tensor:
        r"""Dense :math:`A^J = \mathrm{Diag}(R_S)(\Omega\otimes I_J)`, ``(IJ, IJ)`` -- small problems only."""
        I, J = self.S.shape
        if I * J > 6000:
            raise UserInputError(f"dense() is for small problems, got I*J = {I * J} (> 6000)")
        R = torch.block_diag(*replicator_matrix(self.S))
        return R @ torch.kron(self.weights.to_dense(), torch.eye(J, dtype=self.S.dtype, device=self.S.device))
