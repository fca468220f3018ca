r"""Deep linearized assignment flows: K re-linearized layers (paper 000, eq. (1.6)) trained end to end.

Layer :math:`k = 0..K-1` takes the assignment :math:`W^k` (:math:`W^0 = \mathbb 1_{\mathcal W}`, the
barycenter) and its own weight patches :math:`\Omega^k = \mathrm{predictor}_k(\text{features})`, and
computes with :class:`~flowlearn.linearized.LinearizedAssignmentLayer`

.. math:: S^k = \mathrm{softmax}\big(\Omega^k(\log W^k - D/\rho)\big),\quad
          \dot U = R_{S^k}(\Omega^kU) + \tfrac1J\Pi_0S^k,\ U(0) = 0,\quad V^k = U(T_k),

.. math:: W^{k+1} = \exp_{W^k}(JV^k) = \mathrm{softmax}(\log W^k + JV^k)

(the lifting map; with the barycentric parametrisation :math:`W = \mathrm{softmax}(JV)` this is
:math:`V \leftarrow V + V^k`, exactly :class:`~flowlearn.labeling.LinearizedFlowSequence` when all
:math:`\Omega^k` are equal).  This is the sequential coupling of linearized flows of Sect. 5.2: the
solution of one flow moves the linearization point, hence the data term :math:`B` and the operator
:math:`A`, of the next.  The gradient reaches every :math:`\Omega^k`, the distances :math:`D` and (through
:math:`\log W^k`) the earlier layers by the closed-form backward of each layer; the cheap maps between
layers (softmax, predictors) are plain autograd.

``feed_assignment=True`` gives each predictor :math:`W^k` as extra input channels, so later layers can
adapt their weights to the current labeling.  The output is the final assignment; the usual loss is
the KL (3.4) :math:`-\frac1I\sum_i\log W^K_{i,j^*(i)}` (:func:`assignment_nll`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .._checks import UserInputError, UserTypeError, check_int, check_positive
from ..graphs import WeightOperator
from ..linearized import LinearizedAssignmentLayer, LowRank
from ..linearized.methods import METHODS

__all__ = ["ClassifierDistances", "ConvPatchPredictor", "DeepFlowOutput", "DeepLinearizedFlow", "FreePatches",
           "PrototypeDistances", "assignment_nll"]


class ConvPatchPredictor(nn.Module):
    r"""Small conv net: features ``(H, W, C)`` :math:`\to` weight patches ``(H*W, N)``, rows on the simplex.

    ``depth`` convolutions of size ``kernel_size`` with ``hidden`` channels and ``tanh``, then a 1x1
    convolution to ``N = patch_size`` logits and a softmax over the slots.  The last convolution starts at
    ``init_scale`` times its default initialisation (0: uniform patches, the flow starts as the uniform
    linearized flow).  Parameters: about :math:`k^2C h + (d-1)k^2h^2 + hN`.
    """

    def __init__(self, in_channels: int, patch_size: int = 9, *, hidden: int = 16, kernel_size: int = 3,
                 depth: int = 2, init_scale: float = 0.0):
        super().__init__()
        in_channels, self.patch_size = check_int("in_channels", in_channels, minimum=1), check_int(
            "patch_size", patch_size, minimum=1)
        hidden, depth = check_int("hidden", hidden, minimum=1), check_int("depth", depth, minimum=1)
        kernel_size = check_int("kernel_size", kernel_size, minimum=1, odd=True)
        mods: list[nn.Module] = []
        for d in range(depth):
            mods += [nn.Conv2d(in_channels if d == 0 else hidden, hidden, kernel_size, padding=kernel_size // 2,
                               padding_mode="replicate"), nn.Tanh()]
        last = nn.Conv2d(hidden, self.patch_size, 1)
        with torch.no_grad():
            last.weight.mul_(check_positive("init_scale", init_scale, strict=False))
            last.bias.zero_()
        self.net = nn.Sequential(*mods, last)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not isinstance(features, torch.Tensor) or features.ndim != 3:
            raise UserInputError(f"features must be a tensor (H, W, C), got {getattr(features, 'shape', features)}")
        logits = self.net(features.permute(2, 0, 1).unsqueeze(0))[0]         # (N, H, W)
        return torch.softmax(logits.permute(1, 2, 0).reshape(-1, self.patch_size), dim=-1)


class FreePatches(nn.Module):
    r"""Patches as free parameters: ``softmax(logits)`` ``(I, N)`` (logits 0: uniform), ignoring the features
    -- learning :math:`\Omega^k` of one image directly, as in paper 000."""

    def __init__(self, num_nodes: int, patch_size: int = 9, dtype=None):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(check_int("num_nodes", num_nodes, minimum=1),
                                               check_int("patch_size", patch_size, minimum=1), dtype=dtype))

    def forward(self, features: torch.Tensor | None = None) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1)


class PrototypeDistances(nn.Module):
    r"""Learnable data term: :math:`D_{ij} = \|Lf_i - \ell_j\|^2` with prototypes :math:`\ell` ``(J, C')``
    and an optional learnable linear feature map :math:`L` ``(C', C)`` (initialised to the identity when
    ``C' = C``).  Features ``(H, W, C)`` or ``(I, C)``; returns ``(I, J)``."""

    def __init__(self, prototypes: torch.Tensor, *, learn_prototypes: bool = True, feature_map: bool = False):
        super().__init__()
        p = torch.as_tensor(prototypes)
        if p.ndim != 2 or p.shape[0] < 2 or not p.is_floating_point():
            raise UserInputError(f"prototypes must be a float tensor (J >= 2, C), got {tuple(p.shape)}")
        self.prototypes = nn.Parameter(p.clone(), requires_grad=learn_prototypes)
        C = p.shape[1]
        self.feature_map = nn.Parameter(torch.eye(C, dtype=p.dtype)) if feature_map else None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        f = features.reshape(-1, features.shape[-1])
        if self.feature_map is not None:
            f = f @ self.feature_map.T
        if f.shape[1] != self.prototypes.shape[1]:
            raise UserInputError(f"features must have {self.prototypes.shape[1]} channels, got {f.shape[1]}")
        return (f.unsqueeze(1) - self.prototypes.unsqueeze(0)).pow(2).sum(-1)


class ClassifierDistances(nn.Module):
    r"""Learnable data term from a pixel classifier: :math:`D_{ij} = -\log\mathrm{softmax}(g(f_i))_j`, with
    :math:`g` a small MLP (``hidden`` tanh units) on the features ``(H, W, C)`` or ``(I, C)``; returns ``(I, J)``.

    Pixel-wise rounding of :math:`D` is the classifier's decision; with :math:`\rho = 1` the flow's
    :math:`S^0 = \mathrm{softmax}(-\Omega D)` is the weighted geometric mean of the neighbours' class
    probabilities, so the flow layers only have to learn the spatial part.
    """

    def __init__(self, in_channels: int, num_labels: int, *, hidden: int = 16):
        super().__init__()
        in_channels = check_int("in_channels", in_channels, minimum=1)
        hidden = check_int("hidden", hidden, minimum=1)
        self.net = nn.Sequential(nn.Linear(in_channels, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, check_int("num_labels", num_labels, minimum=2)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        f = features.reshape(-1, features.shape[-1])
        if f.shape[1] != self.net[0].in_features:
            raise UserInputError(f"features must have {self.net[0].in_features} channels, got {f.shape[1]}")
        return -torch.log_softmax(self.net(f), dim=-1)


@dataclass
class DeepFlowOutput:
    """``assignment`` :math:`W^K` and ``log_assignment`` ``(I, J)``; per layer ``tangents`` :math:`V^k` and
    ``patches`` :math:`\\Omega^k`; ``distances`` ``(I, J)`` used."""

    assignment: torch.Tensor
    log_assignment: torch.Tensor
    tangents: list
    patches: list
    distances: torch.Tensor


def assignment_nll(output: DeepFlowOutput | torch.Tensor, labels: torch.Tensor,
                   weight: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    r"""KL (3.4) to one-hot ground truth: :math:`-\frac1I\sum_i\log W_{i,j^*(i)}` (labels ``(I,)`` or ``(H, W)``).

    With class weights ``weight`` ``(J,)``: :math:`-\sum_i w_{j^*(i)}\log W_{i,j^*(i)} / \sum_i w_{j^*(i)}`;
    ``reduction="sum"`` drops the denominator."""
    logw = output.log_assignment if isinstance(output, DeepFlowOutput) else output
    if weight is not None:
        weight = weight.to(device=logw.device, dtype=logw.dtype)
    return nn.functional.nll_loss(logw, labels.reshape(-1).to(device=logw.device, dtype=torch.long), weight=weight,
                                  reduction=reduction)


class DeepLinearizedFlow(nn.Module):
    r"""K layers of (1.6), each with its own predicted weights, trained through the closed-form backward.

    Parameters
    ----------
    weights : WeightOperator
        Stencil shared by all layers (e.g. ``GridWeights(H, W, 3)``).
    predictors : sequence of K modules
        ``predictor_k(x) -> patches (I, N)`` with ``x`` the features (``(H, W, C)`` or ``(I, C)``), or with
        ``feed_assignment`` the features and :math:`W^k` concatenated along the last axis (``C + J``).
    rho : float > 0
    T : float > 0 or sequence of K floats
        Integration time :math:`T_k` (the interval :math:`h_k` of (1.6)) per layer.
    method : one of :data:`flowlearn.linearized.METHODS`
        Backward strategy of every layer (default ``LowRank(m=10, rank=1)``).
    feed_assignment : bool
    distances : module, optional
        ``distances(features) -> (I, J)`` (e.g. :class:`PrototypeDistances`), used when ``forward`` gets no
        distance matrix.
    """

    def __init__(self, weights: WeightOperator, predictors: Sequence[nn.Module], *, rho: float = 1.0,
                 T: float | Sequence[float] = 1.0, method=None, feed_assignment: bool = False,
                 distances: nn.Module | None = None):
        super().__init__()
        if not isinstance(weights, WeightOperator):
            raise UserTypeError(f"weights must be a WeightOperator, got {type(weights).__name__}")
        predictors = list(predictors)
        if not predictors or not all(isinstance(p, nn.Module) for p in predictors):
            raise UserTypeError("predictors must be a non-empty sequence of torch modules")
        K = len(predictors)
        times = [T] * K if isinstance(T, (int, float)) else list(T)
        if len(times) != K:
            raise UserInputError(f"T must be a number or {K} numbers (one per layer), got {len(times)}")
        method = LowRank() if method is None else method
        if not isinstance(method, METHODS):
            raise UserTypeError(f"method must be one of {[m.__name__ for m in METHODS]}, got {method!r}")
        if distances is not None and not isinstance(distances, nn.Module):
            raise UserTypeError(f"distances must be a torch module or None, got {type(distances).__name__}")
        self.weights, self.feed_assignment = weights, bool(feed_assignment)
        self.predictors = nn.ModuleList(predictors)
        self.layers = nn.ModuleList(LinearizedAssignmentLayer(weights, rho=rho, T=check_positive(f"T[{k}]", t),
                                                              method=method) for k, t in enumerate(times))
        self.distance_model = distances

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def forward(self, features: torch.Tensor, distances: torch.Tensor | None = None) -> DeepFlowOutput:
        """Run the K layers; ``distances`` ``(I, J)`` default to ``self.distance_model(features)``."""
        if distances is None:
            if self.distance_model is None:
                raise UserInputError("distances are required (the flow has no distance model)")
            distances = self.distance_model(features)
        if not isinstance(distances, torch.Tensor) or distances.ndim != 2:
            raise UserInputError(f"distances must be a tensor (I, J), got {getattr(distances, 'shape', distances)}")
        J = distances.shape[1]
        logw = torch.full_like(distances, -float(torch.log(torch.tensor(float(J)))))
        tangents, patches = [], []
        for predictor, layer in zip(self.predictors, self.layers):
            x = features
            if self.feed_assignment:
                x = torch.cat([features, logw.exp().reshape(*features.shape[:-1], J)], dim=-1)
            p = predictor(x)
            V = layer(p, distances, logw)
            logw = torch.log_softmax(logw + J * V, dim=-1)
            tangents.append(V)
            patches.append(p)
        return DeepFlowOutput(assignment=logw.exp(), log_assignment=logw, tangents=tangents, patches=patches,
                              distances=distances)
