"""The peers of ``benchmarks/segmentation.py`` (ISBI 2012 membranes, two labels: 1 = membrane).

* graph cuts: the exact Potts MAP of two labels by min cut (PyMaxflow); its operating point ``t`` adds the
  bias ``log(t / (1 - t))`` to the cost of the membrane label;
* a random forest on ``skimage.feature.multiscale_basic_features`` (the ilastik recipe), trained on random
  pixels or on the labelled pixels of sparse labels (scribbles);
* MONAI's ``BasicUNet`` (default features), alone (cross-entropy on its two logits) or followed by the
  assignment-flow head :class:`flowlearn.AssignmentFlowHead` (``nll_loss`` on its log-probabilities),
  trained with Adam for a wall-time budget on random crops with flips, the kept parameters chosen on
  validation images (:func:`train_unet`).

Import as ``from benchmarks import segmentation_peers`` (from the repository root).
"""

from __future__ import annotations

import contextlib
import io
import time

import numpy as np
import torch
from torch import nn

#: channels ``F`` of the BasicUNet features fed to the flow head (BasicUNet's last layer is a 1x1 convolution
#: from its 32 decoder channels to ``F``)
HEAD_FEATURES = 16


# ----------------------------------------------------------------------------------------- graph cuts
def graph_cut(D, lam, t=0.5):
    """Exact Potts MAP of two labels by min cut (PyMaxflow): ``argmin_x sum_i D[i, x_i] + bias [x_i = 1]
    + lam * #{4-neighbour pairs with x_i != x_j}`` with ``bias = log(t / (1 - t))``; ``D`` ``(H, W, 2)``."""
    import maxflow

    D = np.asarray(D, dtype=np.float64)
    g = maxflow.Graph[float]()
    nodes = g.add_grid_nodes(D.shape[:2])
    g.add_grid_edges(nodes, lam)
    # a node on the sink side (segment 1, the membrane) cuts its source edge: the source capacity is its cost
    g.add_grid_tedges(nodes, D[..., 1] + np.log(t / (1 - t)), D[..., 0])
    g.maxflow()
    return g.get_grid_segments(nodes).astype(np.int64)


# ----------------------------------------------------------------------------------------- random forest
def rf_features(img):
    """ilastik-style features: intensity, edges and texture at 5 scales from 1 to 16 pixels."""
    from skimage.feature import multiscale_basic_features

    return multiscale_basic_features(img, intensity=True, edges=True, texture=True, sigma_min=1, sigma_max=16,
                                     num_sigma=5)


def train_rf(x, y, train, *, ignore=None, seed=0, per_image=4000):
    """100 trees on at most ``per_image`` random labelled pixels of every training image (pixels labelled
    ``ignore`` are never drawn: with scribbles of about 1 % all labelled pixels are used);
    returns ``(forest, seconds, tree nodes)``."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    X, Y = [], []
    for i in train:
        f = rf_features(x[i])
        f = f.reshape(-1, f.shape[-1])
        lab = y[i].reshape(-1)
        pool = np.flatnonzero(lab != ignore) if ignore is not None else np.arange(lab.size)
        k = rng.choice(pool, min(per_image, pool.size), replace=False)
        X.append(f[k])
        Y.append(lab[k])
    rf = RandomForestClassifier(n_estimators=100, n_jobs=torch.get_num_threads(), random_state=seed,
                                min_samples_leaf=2).fit(np.concatenate(X), np.concatenate(Y))
    nodes = sum(t.tree_.node_count for t in rf.estimators_)
    return rf, time.perf_counter() - t0, nodes


def rf_score(rf, img):
    """Membrane probability of the forest (``predict_proba``) on an ``(H, W)`` image."""
    return rf.predict_proba(rf_features(img).reshape(-1, rf.n_features_in_))[:, 1].reshape(img.shape)


# ----------------------------------------------------------------------------------------- U-Nets
class Segmenter(nn.Module):
    """MONAI ``BasicUNet(spatial_dims=2, in_channels=1)`` with default features, alone (``head_features=None``:
    2 output channels, log-softmax) or with ``out_channels=head_features`` followed by
    ``AssignmentFlowHead(head_features, 2)`` (3 flow layers).  ``forward``: ``(N, 1, H, W)`` images to
    ``(N, 2, H, W)`` log-probabilities, so both train with ``nll_loss`` (for the plain U-Net: cross-entropy)."""

    def __init__(self, head_features: int | None = None):
        super().__init__()
        from monai.networks.nets import BasicUNet

        from flowlearn import AssignmentFlowHead

        with contextlib.redirect_stdout(io.StringIO()):          # BasicUNet prints its feature sizes
            self.unet = BasicUNet(spatial_dims=2, in_channels=1, out_channels=head_features or 2)
        self.head = AssignmentFlowHead(head_features, 2) if head_features else None

    def forward(self, x):
        z = self.unet(x)
        return self.head(z) if self.head is not None else torch.log_softmax(z, 1)


def crops(x, y, train, gen, n, c):
    """``n`` random ``c x c`` crops of ``x[train]`` / ``y[train]`` with random flips."""
    xs, ys = [], []
    for _ in range(n):
        i = train[int(torch.randint(len(train), (1,), generator=gen))]
        a, b = (int(torch.randint(x.shape[1] - c + 1, (1,), generator=gen)) for _ in range(2))
        xi, yi = x[i, a:a + c, b:b + c], y[i, a:a + c, b:b + c]
        for ax, f in enumerate(torch.randint(2, (2,), generator=gen)):
            if int(f):
                xi, yi = xi.flip(ax), yi.flip(ax)
        xs.append(xi)
        ys.append(yi)
    return torch.stack(xs)[:, None], torch.stack(ys)


def class_weights(y, train, balance, ignore=None):
    """The deep flow's rule (``LabelerConfig.class_balance``): label ``j`` weighs ``frequency_j ** -balance``
    over the labelled pixels of ``y[train]``, scaled so that the lightest weighs 1; None for ``balance = 0``."""
    if balance == 0:
        return None
    lab = y[list(train)].reshape(-1)
    lab = lab[lab != ignore] if ignore is not None else lab
    counts = torch.bincount(lab, minlength=2).to(torch.float64)
    w = (counts.clamp_min(1) / counts.sum()) ** (-balance)
    return (w / w.min()).to(torch.float32)


def validation_error(net, val_x, val_y, ignore=None):
    """Pixel error (percent) of the argmax on the labelled pixels of ``val_y``."""
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(v[None]).argmax(1) for v in val_x])
    net.train()
    keep = val_y != ignore if ignore is not None else torch.ones_like(val_y, dtype=torch.bool)
    return 100.0 * float((pred != val_y)[keep].double().mean())


def train_unet(x, y, train, val, budget, *, head_features=None, crop=128, batch=2, lr=1e-3, class_balance=0.5,
               ignore=None, evals=10, seed=0, name="BasicUNet", log=print):
    """Train a :class:`Segmenter` for ``budget`` seconds (wall time, validation included).

    Adam (``lr``, constant) on ``nll_loss`` of batches of ``batch`` random ``crop``-square crops with flips of
    ``x[train]`` / ``y[train]`` (``(N, H, W)`` float / int64 tensors), class-weighted by :func:`class_weights`;
    pixels labelled ``ignore`` count in no loss (``ignore_index``).  Every ``budget / evals`` seconds and at
    the end, the pixel error on the labelled pixels of ``val = (images, labels)`` is measured and the best
    parameters are kept.  Returns ``(net, seconds, steps, {"step", "validation_error"})``.
    """
    torch.manual_seed(seed)
    net, gen = Segmenter(head_features).float(), torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    weight = class_weights(y, train, class_balance, ignore)
    ignore_index = -100 if ignore is None else int(ignore)
    x, val_x, val_y = x.float(), val[0][:, None].float(), val[1]
    best = {"step": -1, "validation_error": float("inf"), "state": None}
    t0, steps, every = time.perf_counter(), 0, budget / evals
    next_eval = every
    while time.perf_counter() - t0 < budget:
        xb, yb = crops(x, y, train, gen, batch, crop)
        if not bool((yb != ignore_index).any()):
            continue                                     # sparse labels: a crop without a labelled pixel
        loss = nn.functional.nll_loss(net(xb), yb, weight=weight, ignore_index=ignore_index)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= next_eval or elapsed >= budget:
            next_eval = (elapsed // every + 1) * every     # a slow step skips the evaluations it overran
            err = validation_error(net, val_x, val_y, ignore)
            if err < best["validation_error"]:
                best.update(step=steps, validation_error=err, state={k: v.clone() for k, v in net.state_dict().items()})
            log(f"  {name}: {elapsed:5.0f} s, step {steps}, loss {float(loss.detach()):.3f}, validation error {err:.2f} %")
    if best["state"] is not None:
        net.load_state_dict(best.pop("state"))
    return net, time.perf_counter() - t0, steps, {k: best[k] for k in ("step", "validation_error")}


def unet_score(net, img):
    """Membrane probability of a trained :class:`Segmenter` on an ``(H, W)`` image."""
    net.eval()
    with torch.no_grad():
        return net(torch.as_tensor(img, dtype=torch.float32)[None, None]).exp()[0, 1].clamp(0, 1).numpy()
