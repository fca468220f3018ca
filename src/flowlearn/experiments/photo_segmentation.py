r"""Segmentation of a photograph with uncertainty: a Potts model from colour prototypes, fitted by a
randomized assignment flow and compared with a long Gibbs run (``flowlearn segment``).

Model.  The image (downsampled by area averaging so that its longer side is ``size``) gets ``K``
colour prototypes :math:`l_k` by k-means; the unary energy of pixel ``i`` and label ``k`` is the
Gaussian negative log-likelihood :math:`\theta^i_k = w\,\|f_i - l_k\|^2 / (2\hat\sigma^2)`, with
:math:`\hat\sigma^2` the mean squared distance of a pixel to its nearest prototype per channel
and ``w = data_weight``; neighbouring pixels with different labels pay ``coupling`` (Potts).

The flow (:func:`build_flow`) is trained to the Gibbs distribution by
:func:`~flowlearn.randomized.train_randomized_flow` (resumable) and scored against a long, streamed Gibbs run:
the number of distinct segmentations and the mean pairwise Hamming distance (fraction of pixels) among
``num_samples`` flow samples and among the final states of as many independent Gibbs chains, and the marginal
error ``mean_i ½‖q_i − p_i‖₁`` and ``mean_{i,k} |q_ik − p_ik|`` of the flow's marginals against Gibbs'.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .._checks import UserInputError, check_choice, check_int, check_positive, check_seed
from ..geometry import entropy
from ..pgm.gibbs import gibbs_bytes, grid_potts_gibbs
from ..pgm.models import PairwiseModel, potts_grid
from ..randomized.inference import marginal_difference
from ..randomized.interactions import ConvInteraction, SparseInteraction
from ..randomized.sampling import DEFAULT_SAMPLING_MEMORY, per_sample_bytes, sampling_chunk_size
from ..randomized.sflow import RandomizedAssignmentFlow
from ..randomized.training import TrainingConfig, TrainingResult, train_randomized_flow

__all__ = ["PhotoSegmentationConfig", "PhotoSegmentationResult", "build_flow", "downsample", "photo_potts_model",
           "run_photo_segmentation", "sample_diversity", "segment_memory"]


@dataclass(frozen=True)
class PhotoSegmentationConfig:
    """Settings of :func:`run_photo_segmentation` (the ``flowlearn segment`` flags).

    Attributes
    ----------
    labels : int
        Number K of colour prototypes (labels), found by k-means.
    size : int
        Longer side of the downsampled image in pixels (0: keep the image's size).
    square_crop : bool
        Crop the image to its central square before downsampling.
    data_weight : float
        Weight w of the Gaussian colour likelihood in the unary energies.
    coupling : float
        Potts energy of two neighbouring pixels with different labels.
    interaction : str
        Omega of the flow: "conv" (a random 3x3 multi-channel kernel) or "sparse" (on the pixel grid's edges).
    iterations : int
        Training iterations (600 by the measured rule in docs/randomized.md, "Segmenting a photograph").
    batch_size : int
        Flow samples per iteration.
    lr : float
        Adam step length.
    lr_schedule : str
        "constant" or "cosine".
    num_roundings : int
        Random roundings per sample of the score entropy estimator.
    init_noise : float
        Std of independent initial-point noise.
    init_rank : int
        Low-rank Gaussian factors of the initial point.
    init_scale : float
        Initial logits are -init_scale times the unaries.
    num_samples : int
        Flow samples (and independent Gibbs chains) for the diversity metrics.
    marginal_samples : int
        Flow samples for the marginals.
    gibbs_chains, gibbs_burn_in, gibbs_samples : int
        The long Gibbs reference run (chains, sweeps discarded, samples kept for the marginals).
    seed : int
        Seed of k-means, training, sampling and Gibbs.
    """

    labels: int = 4
    size: int = 128
    square_crop: bool = False
    data_weight: float = 1.0
    coupling: float = 1.0
    interaction: str = "conv"
    iterations: int = 600
    batch_size: int = 16
    lr: float = 2e-2
    lr_schedule: str = "cosine"
    num_roundings: int = 4
    init_noise: float = 0.5
    init_rank: int = 0
    init_scale: float = 0.5
    num_samples: int = 64
    marginal_samples: int = 512
    gibbs_chains: int = 64
    gibbs_burn_in: int = 500
    gibbs_samples: int = 32000
    seed: int = 0

    def __post_init__(self):
        check_int("labels", self.labels, minimum=2, maximum=64)
        check_int("size", self.size, minimum=0, maximum=4096)
        if self.size and self.size < 4:
            raise UserInputError(f"size must be 0 or >= 4, got {self.size}")
        check_positive("data_weight", self.data_weight)
        check_positive("coupling", self.coupling, strict=False)
        check_choice("interaction", self.interaction, ("conv", "sparse"))
        check_seed("seed", self.seed)
        for name, low in (("num_samples", 2), ("gibbs_chains", 2), ("marginal_samples", 1), ("gibbs_samples", 1),
                          ("gibbs_burn_in", 0)):
            check_int(name, getattr(self, name), minimum=low)
        check_positive("init_scale", self.init_scale, strict=False)
        self.training_config()
        RandomizedAssignmentFlow(1, 2, init_rank=self.init_rank, init_noise=self.init_noise)

    def training_config(self) -> TrainingConfig:
        return TrainingConfig(iterations=self.iterations, batch_size=self.batch_size, lr=self.lr,
                              lr_schedule=self.lr_schedule, seed=self.seed, entropy_estimator="score",
                              random_roundings=self.num_roundings)


def downsample(image: np.ndarray, size: int, *, square_crop: bool = False) -> np.ndarray:
    """Area-average ``image`` (H, W, C) so that its longer side is ``size`` (never upsamples; 0: unchanged),
    after cropping it to its central square if ``square_crop``."""
    H, W = image.shape[:2]
    if square_crop and H != W:
        s = min(H, W)
        image = image[(H - s) // 2:(H - s) // 2 + s, (W - s) // 2:(W - s) // 2 + s]
        H, W = image.shape[:2]
    if size == 0 or max(H, W) <= size:
        return image
    h, w = max(1, round(H * size / max(H, W))), max(1, round(W * size / max(H, W)))
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float64)).permute(2, 0, 1)[None]
    return torch.nn.functional.adaptive_avg_pool2d(t, (h, w))[0].permute(1, 2, 0).numpy()


def photo_potts_model(image: np.ndarray, prototypes: np.ndarray, *, data_weight: float = 1.0,
                      coupling: float = 1.0) -> PairwiseModel:
    """The Potts grid model of the module docstring for ``image`` (H, W, C) and ``prototypes`` (K, C)."""
    f = torch.as_tensor(np.asarray(image, dtype=np.float64))
    p = torch.as_tensor(np.asarray(prototypes, dtype=np.float64))
    if f.ndim != 3 or p.ndim != 2 or p.shape[1] != f.shape[2]:
        raise UserInputError(f"image (H, W, C) and prototypes (K, C) must agree, got {tuple(f.shape)} and "
                             f"{tuple(p.shape)}")
    d2 = ((f[:, :, None, :] - p) ** 2).sum(-1)  # (H, W, K)
    sigma2 = float(d2.min(-1).values.mean()) / f.shape[2]
    sigma2 = max(sigma2, 1e-6 * max(float(p.var(0).mean()), 1e-12))
    return potts_grid(data_weight * d2 / (2 * sigma2), float(coupling))


def sample_diversity(samples: torch.Tensor) -> dict:
    """``distinct`` configurations and ``mean_hamming`` (mean fraction of differing pixels over all pairs)."""
    s, m = samples.long(), samples.shape[0]
    total = sum(float((s[i + 1:] != s[i]).double().mean(1).sum()) for i in range(m - 1))
    return {"num_samples": m, "distinct": int(torch.unique(s, dim=0).shape[0]),
            "mean_hamming": total / (m * (m - 1) / 2)}


@dataclass
class PhotoSegmentationResult:
    """Outcome of :func:`run_photo_segmentation`; ``metrics`` is JSON-ready."""

    model: PairwiseModel
    flow: RandomizedAssignmentFlow
    training: TrainingResult
    flow_samples: torch.Tensor
    gibbs_samples: torch.Tensor
    flow_marginals: torch.Tensor
    gibbs_marginals: torch.Tensor
    flow_entropy: torch.Tensor
    gibbs_entropy: torch.Tensor
    metrics: dict


def build_flow(model: PairwiseModel, config: PhotoSegmentationConfig) -> RandomizedAssignmentFlow:
    """The untrained float32 flow of ``config`` for ``model``: ``interaction="conv"`` a
    :class:`~flowlearn.randomized.ConvInteraction`, ``"sparse"`` a degree-scaled
    :class:`~flowlearn.randomized.SparseInteraction` on the pixel grid."""
    interaction = (SparseInteraction(model.edges, drive_scale="degree") if config.interaction == "sparse"
                   else ConvInteraction(model.grid_shape))
    return RandomizedAssignmentFlow(
        model.num_nodes, model.num_labels, interaction=interaction, init_rank=config.init_rank,
        init_noise=config.init_noise, initial_logits=-config.init_scale * model.unary, dtype=torch.float32)


def segment_memory(grid_shape: tuple, num_labels: int, config: PhotoSegmentationConfig) -> dict:
    r"""Estimated memory in bytes of :func:`run_photo_segmentation` plus ``flowlearn segment``'s outputs, by phase.

    For ``n`` pixels, ``c`` labels, ``E`` grid edges, batch ``B`` and ``T`` Euler steps (float32 flow), calibrated
    against the peak RSS of each phase alone: ``training`` :math:`4 B T (7 n c + 6 E c)` for sparse Omega,
    :math:`4 B T \cdot 7 n c` for conv, + 96 MB; ``flow_sampling`` 1.4 sampling chunks (at most
    ``marginal_samples``); ``gibbs`` :func:`~flowlearn.pgm.gibbs.gibbs_bytes` (streamed: independent of
    ``gibbs_samples``); ``outputs`` :math:`16` ``num_samples`` :math:`n + 128 n c` + 32 MB.  The phases run one
    after another, but the allocator keeps part of what one freed: ``total = largest + 1/2 next largest +
    outputs``.
    """
    rows, cols = (int(v) for v in grid_shape)
    n, c = rows * cols, int(num_labels)
    edges = rows * (cols - 1) + (rows - 1) * cols
    flow_steps = RandomizedAssignmentFlow(1, 2).num_steps
    per_step = 7 * n * c + (6 * edges * c if config.interaction == "sparse" else 0)
    training = 4 * config.batch_size * flow_steps * per_step + 96 * 2**20
    params = (2 * edges + n) if config.interaction == "sparse" else c * c * 9
    chunk = sampling_chunk_size(params, n, c, 4, DEFAULT_SAMPLING_MEMORY)
    sampling = int(1.4 * min(chunk, config.marginal_samples) * per_sample_bytes(params, n, c, 4))
    gibbs = gibbs_bytes(n, c, config.gibbs_chains)
    outputs = 16 * config.num_samples * n + 16 * 8 * n * c + 32 * 2**20
    first, second = sorted((training, sampling, gibbs), reverse=True)[:2]
    return {"training": training, "flow_sampling": sampling, "gibbs": gibbs, "outputs": outputs,
            "total": first + second // 2 + outputs}


def run_photo_segmentation(model: PairwiseModel, config: PhotoSegmentationConfig, *, checkpoint_path=None,
                           resume: bool = False, overwrite: bool = False,
                           show_progress: bool | None = None) -> PhotoSegmentationResult:
    """Train the flow on ``model`` (a grid Potts model), run the Gibbs reference and score (module docstring);
    ``checkpoint_path``, ``resume`` and ``overwrite`` go to :func:`~flowlearn.randomized.train_randomized_flow`."""
    if model.grid_shape is None:
        raise UserInputError("run_photo_segmentation needs a grid model (grid_shape set)")
    flow = build_flow(model, config)
    t0 = time.perf_counter()
    training = train_randomized_flow(flow, model, config.training_config(), checkpoint_path=checkpoint_path,
                                     resume=resume, overwrite=overwrite, show_progress=show_progress)
    train_seconds = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(config.seed + 1)
    t0 = time.perf_counter()
    samples = flow.sample(config.num_samples, gen)
    sample_seconds = time.perf_counter() - t0
    q_flow = flow.marginals(config.marginal_samples, gen).double()
    want = max(config.gibbs_samples, config.gibbs_chains)
    g = grid_potts_gibbs(model, want, num_chains=config.gibbs_chains, burn_in=config.gibbs_burn_in,
                         seed=config.seed + 3, keep_samples=False)
    q_ref, se, gibbs_final = g.marginals, g.marginal_standard_error, g.final[:config.num_samples]
    h_flow, h_gibbs = entropy(q_flow), entropy(q_ref.double())
    metrics = {
        "image_shape": list(model.grid_shape), "num_nodes": model.num_nodes, "labels": model.num_labels,
        "flow": {**sample_diversity(samples), "train_seconds": train_seconds,
                 "iterations": training.stats["iterations"], "resumed_from": training.stats["resumed_from"],
                 "seconds_per_iteration": train_seconds / max(1, training.stats["iterations"]
                                                              - training.stats["resumed_from"]),
                 "samples_per_second": config.num_samples / sample_seconds,
                 "mean_energy": float(model.energy(samples).double().mean()),
                 "mean_pixel_entropy": float(h_flow.mean())},
        "gibbs": {**sample_diversity(gibbs_final), "expected_hamming": g.expected_hamming(),
                  "chains": g.num_chains, "sweeps": g.sweeps, "samples": g.num_samples, "seconds": g.seconds,
                  "mean_energy": g.mean_energy, "energy_standard_error": g.energy_standard_error,
                  "mean_pixel_entropy": float(h_gibbs.mean()),
                  "marginal_standard_error_mean": float(se.mean()),
                  "marginal_standard_error_max": float(se.max())},
        "marginal_difference": marginal_difference(q_flow, q_ref),
        "mean_abs_marginal_error": float((q_flow - q_ref).abs().mean()),
        "pixels_flow_map_differs_from_gibbs_map": float((q_flow.argmax(-1) != q_ref.argmax(-1)).double().mean()),
        "notes": {"marginal_difference": "mean over pixels of 1/2 ||q_flow - q_gibbs||_1",
                  "mean_abs_marginal_error": "mean over pixels and labels of |q_flow - q_gibbs|",
                  "mean_hamming": "mean over pairs of samples of the fraction of pixels that differ",
                  "gibbs diversity": "final states of independent chains",
                  "expected_hamming": "mean Hamming fraction of two independent Gibbs samples, "
                                      "mean_i (1 - sum_k p_ik^2), unbiased from the per-chain marginals",
                  "gibbs mean_energy": "mean over all retained Gibbs samples (streamed), with its "
                                       "between-chain standard error"},
    }
    return PhotoSegmentationResult(model=model, flow=flow, training=training, flow_samples=samples,
                                   gibbs_samples=gibbs_final, flow_marginals=q_flow, gibbs_marginals=q_ref,
                                   flow_entropy=h_flow, gibbs_entropy=h_gibbs, metrics=metrics)
