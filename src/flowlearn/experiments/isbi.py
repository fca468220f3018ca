"""The ISBI 2012 membrane recipe of the deep linearized flow (docs/learning.md, ``benchmarks/segmentation.py``).

Splits of the 24 images of ``isbi2012_membranes.npz``: training 0-15, validation 16-19 (model
selection only), test 20-23.  :func:`labeler_config` is the documented recipe: fixed filter bank, a
classifier data term warmed up on random pixels for ``pretrain_steps`` steps, then ``steps`` end-to-end
steps on random 128x128 crops with a cosine step size down to a tenth, the validation images picking the
kept parameters.  The same from the shell::

    flowlearn train-labeler --data isbi2012_membranes.npz --train 0-15 --val 16-19 --out runs/isbi

(the defaults of :class:`~flowlearn.learning.labeler_config.LabelerConfig` are this recipe).
"""

from __future__ import annotations

import numpy as np
import torch

from ..learning.labeler import LabelerConfig

__all__ = ["TEST", "TRAIN", "VALIDATION", "deep_flow_score", "labeler_config"]

#: Image indices of the splits of ``isbi2012_membranes.npz``: training 0-15, validation 16-19, test 20-23.
TRAIN, VALIDATION, TEST = list(range(16)), list(range(16, 20)), list(range(20, 24))


def labeler_config(*, crop: int = 128, layers: int = 3, rho: float = 1.0, pretrain_steps: int = 1000,
                   steps: int = 2000, class_balance: float = 0.5) -> LabelerConfig:
    """The recipe: ``pretrain_steps`` data-term warm-up steps, then ``steps`` flow steps (evaluated on the
    validation images every ``steps // 10``), 2 crops per step, Adam at 0.01 with a cosine decay to 0.001,
    no checkpoints."""
    return LabelerConfig(crop=crop, batch=2, layers=layers, features=8, hidden=16, lr=0.01, rho=rho, T=1.0,
                         iterations=pretrain_steps + steps, eval_every=max(1, steps // 10),
                         checkpoint_every=10**9, checkpoint_seconds=0, filter_bank=True, data_term="classifier",
                         pretrain_steps=pretrain_steps, final_lr_fraction=0.1, class_balance=class_balance)


def deep_flow_score(model, img) -> np.ndarray:
    """Membrane probability of the deep flow: its final assignment ``W[:, 1]`` on the ``(H, W)`` image."""
    with torch.no_grad():
        return model(torch.as_tensor(img)[..., None]).assignment[:, 1].reshape(img.shape).numpy()
