r"""Fig. 1-style demo: segmenting an ambiguous subject with a Potts model.

The image shows a subject on a background.  Background pixels clearly belong to label 0; the
subject's pixels are equally compatible with labels 1 and 2 ("cat or lion").  With a Potts
coupling the Gibbs distribution puts half its mass on "subject = 1" and half on "subject = 2",
while each pixel's marginal is 50/50.  A randomized assignment flow with convolutional
interaction learns the joint distribution, so its samples colour the whole subject
consistently; sampling each pixel independently from the (correct) marginals does not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._checks import check_int, check_positive
from ..io import ensure_out_dir, save_png
from ..pgm.models import PairwiseModel, potts_grid
from ..randomized.interactions import ConvInteraction
from ..randomized.plots import labels_to_rgb, tile_images
from ..randomized.sflow import RandomizedAssignmentFlow
from ..randomized.training import TrainingConfig, TrainingResult, train_randomized_flow

__all__ = ["SegmentationDemoResult", "ambiguous_image_model", "run_segmentation_demo"]


def ambiguous_image_model(rows: int = 12, cols: int = 16, *, data_weight: float = 2.0, coupling: float = 1.0,
                          noise: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray, PairwiseModel]:
    r"""``(image, mask, model)``: an image in [0, 1] and a subject mask, both ``(rows, cols)``, and the 3-label
    Potts model with unary energies :math:`(0, w, w)` on the background and :math:`(w, 0, 0)` on the subject (:math:`w`
    = ``data_weight``) plus seeded Gaussian noise of std ``noise``, equal on labels 1 and 2 (so that relabelling
    1 <-> 2 is an exact symmetry), and Potts ``coupling``.
    """
    rows = check_int("rows", rows, minimum=4)
    cols = check_int("cols", cols, minimum=4)
    check_positive("data_weight", data_weight)
    check_positive("noise", noise, strict=False)
    yy, xx = np.mgrid[0:rows, 0:cols]
    cy, cx = rows * 0.55, cols * 0.5
    body = ((yy - cy) / (rows * 0.3)) ** 2 + ((xx - cx) / (cols * 0.28)) ** 2 <= 1.0
    head = ((yy - rows * 0.28) / (rows * 0.18)) ** 2 + ((xx - cols * 0.5) / (cols * 0.16)) ** 2 <= 1.0
    ears = (yy < rows * 0.2) & (yy >= rows * 0.05) & ((np.abs(xx - cols * 0.38) < cols * 0.05) |
                                                      (np.abs(xx - cols * 0.62) < cols * 0.05))
    mask = body | head | ears
    gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    dtype = torch.get_default_dtype()
    unary = torch.zeros(rows, cols, 3, dtype=dtype)
    m = torch.from_numpy(mask)
    unary[..., 0] = torch.where(m, data_weight, 0.0)
    unary[..., 1:] = torch.where(m, 0.0, data_weight)[..., None]
    # the same noise on labels 1 and 2 keeps the two readings of the subject exactly tied
    unary += noise * torch.randn(rows, cols, 2, generator=gen, dtype=dtype)[..., [0, 1, 1]]
    image = np.where(mask, 0.6, 0.15) + 0.05 * np.asarray(torch.randn(rows, cols, generator=gen, dtype=torch.float64))
    return np.clip(image, 0, 1), mask, potts_grid(unary, coupling)


@dataclass
class SegmentationDemoResult:
    """Outcome of :func:`run_segmentation_demo`; ``coherent_joint`` / ``coherent_marginal``: fraction of joint flow
    samples / of pixel-wise samples from the flow's marginals whose subject pixels not labelled 0 share one label.
    """

    model: PairwiseModel
    flow: RandomizedAssignmentFlow
    training: TrainingResult
    joint_samples: torch.Tensor
    marginal_samples: torch.Tensor
    marginals: torch.Tensor
    coherent_joint: float
    coherent_marginal: float
    png: Path | None
    seconds: float


def _coherent(samples: torch.Tensor, mask: np.ndarray) -> float:
    sub = samples[:, torch.from_numpy(mask.reshape(-1))]
    return float((((sub == 1).sum(1) == 0) | ((sub == 2).sum(1) == 0)).double().mean())


def run_segmentation_demo(out_dir=None, *, rows: int = 12, cols: int = 16, iterations: int = 300,
                          batch_size: int = 64, lr: float = 2e-2, seed: int = 0, num_samples: int = 8,
                          show_progress: bool | None = None) -> SegmentationDemoResult:
    """Train a convolutional randomized flow on :func:`ambiguous_image_model`; with ``out_dir`` draw Fig. 1 to
    ``segmentation.png``: the image, a row of joint samples, a row of pixel-wise samples from the marginals."""
    t0 = time.perf_counter()
    num_samples = check_int("num_samples", num_samples, minimum=1)
    image, mask, model = ambiguous_image_model(rows, cols, seed=seed)
    # one initial factor starts along the global "label 1 <-> label 2" direction (data independent),
    # the other at small random values: the joint choice of the subject's label is then one
    # Gaussian coordinate, which training keeps bimodal
    gen0 = torch.Generator().manual_seed(seed)
    factors = torch.stack([torch.tensor([0.0, 1.0, -1.0], dtype=model.dtype).expand(model.num_nodes, 3),
                           0.1 * torch.randn(model.num_nodes, 3, generator=gen0, dtype=model.dtype)])
    flow = RandomizedAssignmentFlow(model.num_nodes, 3, interaction=ConvInteraction((rows, cols)),
                                    init_rank=2, init_noise=0.3, initial_logits=-0.5 * model.unary,
                                    initial_factors=factors, dtype=model.dtype)
    training = train_randomized_flow(flow, model, TrainingConfig(iterations=iterations, batch_size=batch_size, lr=lr,
                                                                 seed=seed, entropy_estimator="score"),
                                     show_progress=show_progress)
    gen = torch.Generator().manual_seed(seed + 1)
    joint = flow.sample(max(num_samples, 256), gen)
    marg = flow.marginals(2048, gen)
    indep = torch.multinomial(marg.expand(max(num_samples, 256), -1, -1).reshape(-1, 3), 1,
                              generator=gen).reshape(-1, model.num_nodes)
    png = None
    if out_dir is not None:
        grey = np.repeat(np.kron(image, np.ones((8, 8)))[..., None], 3, axis=2)
        blank = np.ones_like(grey)
        rows_img = [[grey] + [blank] * (num_samples - 1),
                    [labels_to_rgb(s, (rows, cols), 8) for s in joint[:num_samples]],
                    [labels_to_rgb(s, (rows, cols), 8) for s in indep[:num_samples]]]
        png = save_png(ensure_out_dir(out_dir) / "segmentation.png", tile_images(rows_img))
    return SegmentationDemoResult(model=model, flow=flow, training=training, joint_samples=joint[:num_samples],
                                  marginal_samples=indep[:num_samples], marginals=marg,
                                  coherent_joint=_coherent(joint, mask), coherent_marginal=_coherent(indep, mask),
                                  png=png, seconds=time.perf_counter() - t0)
