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
from ..graphs import BatchWeights, WeightOperator

__all__ = ["LinearizedSystem"]


@dataclass
class LinearizedSystem:
    r"""The affine system :math:`\dot U = AU + B` of a linearized assignment flow: ``weights`` (one operator, or
    a :class:`~flowlearn.graphs.BatchWeights` for tensors ``(B, I, J)``), the similarities ``S`` ``([B,] I, J)`` at
    the linearization point and ``B`` :math:`= \tfrac1J \Pi_0 S`."""

    weights: WeightOperator | BatchWeights
    S: torch.Tensor
    B: torch.Tensor

    @classmethod
    def at(cls, weights: WeightOperator, scaled_distances: torch.Tensor,
           V: torch.Tensor | None = None) -> LinearizedSystem:
        r"""Linearize at :math:`V` (default the barycenter, :math:`V=0`); ``scaled_distances`` :math:`D/\rho`."""
        J = scaled_distances.shape[-1]
        logits = -scaled_distances if V is None else J * V - scaled_distances
        S = torch.softmax(weights.apply(logits), dim=-1)
        return cls(weights=weights, S=S, B=proj_tangent(S) / J)

    @property
    def num_labels(self) -> int:
        return self.S.shape[-1]

    def matvec(self, U: torch.Tensor) -> torch.Tensor:
        r""":math:`AU = R_{S}(\Omega U)`."""
        return replicator(self.S, self.weights.apply(U))

    def rmatvec(self, U: torch.Tensor) -> torch.Tensor:
        r""":math:`A^\top U = \Omega^\top R_{S}(U)` (the replicator is symmetric)."""
        return self.weights.apply_transpose(replicator(self.S, U))

    def dense(self) -> torch.Tensor:
        r"""Dense :math:`A^J = \mathrm{Diag}(R_S)(\Omega\otimes I_J)`, ``([B,] IJ, IJ)`` -- small problems only:
        :math:`A^J_{(i,a),(l,b)} = \Omega_{il}(R_{S_i})_{ab}`."""
        I, J = self.S.shape[-2:]
        if I * J > 6000:
            raise UserInputError(f"dense() is for small problems, got I*J = {I * J} (> 6000)")
        A = torch.einsum("...il,...iab->...ialb", self.weights.to_dense(), replicator_matrix(self.S))
        return A.reshape(*self.S.shape[:-2], I * J, I * J)
