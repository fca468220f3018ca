r"""Deep linearized assignment flows: K re-linearized layers (paper 000, eq. (1.6)) trained end to end.

Layer :math:`k` takes the assignment :math:`W^k` (:math:`W^0` the barycenter) and its weight patches
:math:`\Omega^k = \mathrm{predictor}_k(\text{features})` and computes with
:class:`~flowlearn.linearized.LinearizedAssignmentLayer`

.. math:: S^k = \mathrm{softmax}\big(\Omega^k(\log W^k - D/\rho)\big),\quad
          \dot U = R_{S^k}(\Omega^kU) + \tfrac1J\Pi_0S^k,\ U(0) = 0,\quad V^k = U(T_k),\quad
          W^{k+1} = \mathrm{softmax}(\log W^k + JV^k),

the sequential coupling of Sect. 5.2.  The gradient reaches every :math:`\Omega^k`, :math:`D` and the earlier
layers by the closed-form backward of each layer.  Shapes: features ``(N, C, *spatial)``, distances and
assignments ``(N, J, *spatial)``, patches ``(N, K, *spatial)``, ``spatial`` ``(H, W)`` or ``(D, H, W)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.utils.checkpoint
from torch import nn

from .._checks import UserInputError, UserTypeError, check_choice, check_int, check_positive
from ..linearized import LinearizedAssignmentLayer, LowRank
from ..linearized.methods import check_method

__all__ = ["AssignmentFlowHead", "ClassifierDistances", "ConvPatchPredictor", "DeepFlowOutput", "DeepLinearizedFlow",
           "FreePatches", "PrototypeDistances", "assignment_nll"]


def _channels_first(name: str, x, channels: int | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim not in (4, 5) or (channels is not None and x.shape[1] != channels):
        c = "C" if channels is None else channels
        raise UserInputError(f"{name} must be a tensor (N, {c}, H, W) or (N, {c}, D, H, W), got "
                             f"{tuple(getattr(x, 'shape', ())) or type(x).__name__}")
    return x


def _check_features(features, spatial_dims: int) -> None:
    if not isinstance(features, torch.Tensor) or features.ndim != spatial_dims + 2:
        raise UserInputError(f"features must be a tensor (N, C, *spatial) with {spatial_dims} spatial "
                             f"axes, got {tuple(getattr(features, 'shape', ()))}")


def _pixelwise(module, x: torch.Tensor) -> torch.Tensor:
    """Apply a map on the channel axis of ``(N, C, *spatial)`` (channels moved last and back)."""
    return module(x.movedim(1, -1)).movedim(-1, 1)


class ConvPatchPredictor(nn.Module):
    r"""Small conv net: features ``(N, C, *spatial)`` :math:`\to` weight patches ``(N, K, *spatial)`` on the simplex.

    ``depth`` convolutions (``kernel_size``, ``hidden`` channels, ``tanh``; ``Conv2d`` or ``Conv3d`` by
    ``spatial_dims``), then a 1x1 convolution to ``K = patch_size`` logits and a softmax over the slots.  The last
    convolution starts at ``init_scale`` times its default initialisation (0: uniform patches).
    """

    def __init__(self, in_channels: int, patch_size: int = 9, *, hidden: int = 16, kernel_size: int = 3,
                 depth: int = 2, init_scale: float = 0.0, spatial_dims: int = 2):
        super().__init__()
        in_channels = check_int("in_channels", in_channels, minimum=1)
        self.patch_size = check_int("patch_size", patch_size, minimum=1)
        hidden, depth = check_int("hidden", hidden, minimum=1), check_int("depth", depth, minimum=1)
        kernel_size = check_int("kernel_size", kernel_size, minimum=1, odd=True)
        check_choice("spatial_dims", spatial_dims, (2, 3))
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        mods: list[nn.Module] = []
        for d in range(depth):
            mods += [conv(in_channels if d == 0 else hidden, hidden, kernel_size, padding=kernel_size // 2,
                          padding_mode="replicate"), nn.Tanh()]
        last = conv(hidden, self.patch_size, 1)
        with torch.no_grad():
            last.weight.mul_(check_positive("init_scale", init_scale, strict=False))
            last.bias.zero_()
        self.net = nn.Sequential(*mods, last)
        self.spatial_dims = spatial_dims

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _check_features(features, self.spatial_dims)
        return torch.softmax(self.net(features), dim=1)


class FreePatches(nn.Module):
    r"""Patches as free parameters of one grid, ``softmax(logits)`` ``(1, K, *spatial)`` (initially uniform),
    ignoring the features: learning :math:`\Omega^k` of one image directly, as in paper 000."""

    def __init__(self, spatial: tuple, patch_size: int = 9, dtype=None):
        super().__init__()
        spatial = tuple(check_int("spatial", n, minimum=1) for n in spatial)
        self.logits = nn.Parameter(torch.zeros(1, check_int("patch_size", patch_size, minimum=1), *spatial,
                                               dtype=dtype))

    def forward(self, features: torch.Tensor | None = None) -> torch.Tensor:
        return torch.softmax(self.logits, dim=1)


class PrototypeDistances(nn.Module):
    r"""Learnable data term: :math:`D_{ij} = \|Lf_i - \ell_j\|^2` with prototypes :math:`\ell` ``(J, C')``
    and an optional learnable linear feature map :math:`L` ``(C', C)`` (initialised to the identity when
    ``C' = C``).  Features ``(N, C, *spatial)``; returns ``(N, J, *spatial)``."""

    def __init__(self, prototypes: torch.Tensor, *, learn_prototypes: bool = True, feature_map: bool = False):
        super().__init__()
        p = torch.as_tensor(prototypes)
        if p.ndim != 2 or p.shape[0] < 2 or not p.is_floating_point():
            raise UserInputError(f"prototypes must be a float tensor (J >= 2, C), got {tuple(p.shape)}")
        self.prototypes = nn.Parameter(p.clone(), requires_grad=learn_prototypes)
        self.feature_map = nn.Parameter(torch.eye(p.shape[1], dtype=p.dtype)) if feature_map else None

    def _last(self, f: torch.Tensor) -> torch.Tensor:
        if self.feature_map is not None:
            f = f @ self.feature_map.T
        if f.shape[-1] != self.prototypes.shape[1]:
            raise UserInputError(f"features must have {self.prototypes.shape[1]} channels, got {f.shape[-1]}")
        return (f.unsqueeze(-2) - self.prototypes).pow(2).sum(-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return _pixelwise(self._last, _channels_first("features", features))


class ClassifierDistances(nn.Module):
    r"""Learnable data term from a pixel classifier: :math:`D_{ij} = -\log\mathrm{softmax}(g(f_i))_j`, with
    :math:`g` a small MLP (``hidden`` tanh units) on the features ``(N, C, *spatial)``; returns
    ``(N, J, *spatial)``.  With :math:`\rho = 1`, :math:`S^0` is the weighted geometric mean of the neighbours'
    class probabilities, so the flow layers only have to learn the spatial part."""

    def __init__(self, in_channels: int, num_labels: int, *, hidden: int = 16):
        super().__init__()
        in_channels = check_int("in_channels", in_channels, minimum=1)
        hidden = check_int("hidden", hidden, minimum=1)
        self.net = nn.Sequential(nn.Linear(in_channels, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, check_int("num_labels", num_labels, minimum=2)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _channels_first("features", features, self.net[0].in_features)
        return -torch.log_softmax(_pixelwise(self.net, features), dim=1)


@dataclass
class DeepFlowOutput:
    """``assignment`` :math:`W^K`, ``log_assignment``, per layer ``tangents`` and ``patches``; ``distances``."""

    assignment: torch.Tensor
    log_assignment: torch.Tensor
    tangents: list
    patches: list
    distances: torch.Tensor


def assignment_nll(output: DeepFlowOutput | torch.Tensor, labels: torch.Tensor,
                   weight: torch.Tensor | None = None, reduction: str = "mean",
                   ignore_index: int = -100) -> torch.Tensor:
    r"""KL (3.4) to one-hot ground truth, :math:`-\sum_i w_{j^*(i)}\log W_{i,j^*(i)} / \sum_i w_{j^*(i)}` for
    log-assignments ``(N, J, *spatial)``, labels ``(N, *spatial)`` and class weights ``weight`` ``(J,)`` (default
    1); ``reduction="sum"`` drops the denominator; pixels labelled ``ignore_index`` do not count."""
    logw = output.log_assignment if isinstance(output, DeepFlowOutput) else output
    if weight is not None:
        weight = weight.to(device=logw.device, dtype=logw.dtype)
    return nn.functional.nll_loss(logw, labels.to(device=logw.device, dtype=torch.long), weight=weight,
                                  reduction=reduction, ignore_index=ignore_index)


class DeepLinearizedFlow(nn.Module):
    r"""K layers of (1.6), each with its own predicted weights, on channels-first batches (2-D or 3-D).

    Parameters
    ----------
    predictors : sequence of K modules
        ``predictor_k(x) -> patches (N, K, *spatial)`` with ``x`` the features ``(N, C, *spatial)``, or with
        ``feed_assignment`` the features and :math:`W^k` concatenated along the channels (``C + J``).
    rho : float > 0
    T : float > 0 or sequence of K floats
        Integration time :math:`T_k` (the interval :math:`h_k` of (1.6)) per layer.
    method : one of :data:`flowlearn.linearized.METHODS`
        Backward strategy of every layer (default ``LowRank()``).
    feed_assignment : bool
        Give each predictor :math:`W^k` as extra input channels.
    distances : module, optional
        ``distances(features) -> (N, J, *spatial)`` (e.g. :class:`PrototypeDistances`), used when ``forward``
        gets no distances.
    size, neighbourhood : int
        Stencils of 2-D (``size x size``) and 3-D (6 or 26 neighbours) inputs, as
        :class:`~flowlearn.linearized.LinearizedAssignmentLayer`.
    checkpoint : bool
        Recompute the predictors' activations in the backward instead of keeping them
        (``torch.utils.checkpoint``; large 3-D inputs).
    """

    def __init__(self, predictors: Sequence[nn.Module], *, rho: float = 1.0, T: float | Sequence[float] = 1.0,
                 method=None, feed_assignment: bool = False, distances: nn.Module | None = None, size: int = 3,
                 neighbourhood: int = 26, checkpoint: bool = False):
        super().__init__()
        predictors = list(predictors)
        if not predictors or not all(isinstance(p, nn.Module) for p in predictors):
            raise UserTypeError("predictors must be a non-empty sequence of torch modules")
        K = len(predictors)
        times = [T] * K if isinstance(T, (int, float)) else list(T)
        if len(times) != K:
            raise UserInputError(f"T must be a number or {K} numbers (one per layer), got {len(times)}")
        method = check_method(LowRank() if method is None else method)
        if distances is not None and not isinstance(distances, nn.Module):
            raise UserTypeError(f"distances must be a torch module or None, got {type(distances).__name__}")
        self.feed_assignment, self.checkpoint = bool(feed_assignment), bool(checkpoint)
        self.predictors = nn.ModuleList(predictors)
        self.layers = nn.ModuleList(
            LinearizedAssignmentLayer(rho=rho, T=check_positive(f"T[{k}]", t), method=method, size=size,
                                      neighbourhood=neighbourhood) for k, t in enumerate(times))
        self.distance_model = distances

    def forward(self, features: torch.Tensor, distances: torch.Tensor | None = None) -> DeepFlowOutput:
        """Run the K layers on ``features`` ``(N, C, *spatial)``; ``distances`` ``(N, J, *spatial)`` default to
        ``self.distance_model(features)``."""
        if distances is None:
            if self.distance_model is None:
                raise UserInputError("distances are required (the flow has no distance model)")
            distances = self.distance_model(features)
        _channels_first("distances", distances)
        J = distances.shape[1]
        logw = torch.full_like(distances, -float(torch.log(torch.tensor(float(J)))))
        tangents, patches = [], []
        for predictor, layer in zip(self.predictors, self.layers):
            x = torch.cat([features, logw.exp()], dim=1) if self.feed_assignment else features
            p = (torch.utils.checkpoint.checkpoint(predictor, x, use_reentrant=False)
                 if self.checkpoint and torch.is_grad_enabled() else predictor(x))
            tangents.append(layer.tangent(p, distances, logw))
            patches.append(p)
            logw = torch.log_softmax(logw + J * tangents[-1], dim=1)
        return DeepFlowOutput(assignment=logw.exp(), log_assignment=logw, tangents=tangents, patches=patches,
                              distances=distances)


class AssignmentFlowHead(nn.Module):
    r"""Segmentation head for any backbone: features ``(N, C, *spatial)`` :math:`\to` log-probabilities
    ``(N, J, *spatial)`` (train with ``nll_loss``), 2-D or 3-D by the input's rank.

    A 1x1 convolution gives the data term (logits :math:`\ell`, distances :math:`D = -\ell`, :math:`\rho = 1`);
    per layer a :class:`ConvPatchPredictor` sees the features and the current assignment and predicts the
    weight patches; ``layers`` re-linearized flows (1.6) follow (:class:`DeepLinearizedFlow`).  The patch
    predictors start uniform (``init_scale = 0``), so an untrained head smooths the backbone's logits.

    ``layers`` flow layers, each with integration time ``T``; ``hidden``: the width of the patch predictors;
    ``method``, ``size``, ``neighbourhood`` and ``checkpoint`` as :class:`DeepLinearizedFlow` (for the least
    memory also pass ``method=LowRank(recompute_forward=True)``).
    """

    def __init__(self, in_channels: int, num_labels: int, layers: int = 3, *, spatial_dims: int = 2,
                 T: float = 1.0, hidden: int = 16, method=None, size: int = 3, neighbourhood: int = 26,
                 checkpoint: bool = False):
        super().__init__()
        C = check_int("in_channels", in_channels, minimum=1)
        J = check_int("num_labels", num_labels, minimum=2)
        layers = check_int("layers", layers, minimum=1)
        check_choice("spatial_dims", spatial_dims, (2, 3))
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.spatial_dims = spatial_dims
        self.logits = conv(C, J, 1)
        K = size**2 if spatial_dims == 2 else (7 if neighbourhood == 6 else 27)
        predictors = [ConvPatchPredictor(C + J, K, hidden=hidden, spatial_dims=spatial_dims) for _ in range(layers)]
        self.flow = DeepLinearizedFlow(predictors, rho=1.0, T=T, method=method, feed_assignment=True, size=size,
                                       neighbourhood=neighbourhood, checkpoint=checkpoint)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _check_features(features, self.spatial_dims)
        return self.flow(features, -self.logits(features)).log_assignment
