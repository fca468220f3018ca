"""The peers of ``benchmarks/segmentation.py`` (ISBI 2012 membranes, two labels: 1 = membrane).

Graph cuts (exact Potts MAP of two labels by min cut), a random forest on multiscale filter features
and a small U-Net.  Each gives a score per image that ``benchmarks/segmentation.py`` evaluates with
:mod:`flowlearn.evaluation` (pixel error, membrane F1, adapted Rand error, the tuned operating point);
for graph cuts the operating point ``t`` adds the bias ``log(t / (1 - t))`` to the cost of the membrane
label.  Import as ``from benchmarks import segmentation_peers`` (from the repository root).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn


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
    from skimage.feature import multiscale_basic_features

    return multiscale_basic_features(img, intensity=True, edges=True, texture=True, sigma_min=1, sigma_max=16,
                                     num_sigma=5)


def train_rf(x, y, train, seed=0, per_image=4000):
    """100 trees on ``per_image`` random pixels of every training image (the ilastik recipe);
    returns ``(forest, seconds, tree nodes)``."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    X, Y = [], []
    for i in train:
        f = rf_features(x[i])
        k = rng.choice(f.shape[0] * f.shape[1], per_image, replace=False)
        X.append(f.reshape(-1, f.shape[-1])[k])
        Y.append(y[i].reshape(-1)[k])
    rf = RandomForestClassifier(n_estimators=100, n_jobs=torch.get_num_threads(), random_state=seed,
                                min_samples_leaf=2).fit(np.concatenate(X), np.concatenate(Y))
    nodes = sum(t.tree_.node_count for t in rf.estimators_)
    return rf, time.perf_counter() - t0, nodes


def rf_score(rf, img):
    return rf.predict_proba(rf_features(img).reshape(-1, rf.n_features_in_))[:, 1].reshape(img.shape)


# ----------------------------------------------------------------------------------------- U-Net
class UNet(nn.Module):
    """A small two-level U-Net (3x3 convolutions, ReLU, max pooling, transposed-convolution upsampling)."""

    def __init__(self, c=(16, 32, 64)):
        super().__init__()
        blk = lambda a, b: nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.ReLU(), nn.Conv2d(b, b, 3, padding=1),
                                         nn.ReLU())
        self.e1, self.e2, self.b = blk(1, c[0]), blk(c[0], c[1]), blk(c[1], c[2])
        self.u2, self.d2 = nn.ConvTranspose2d(c[2], c[1], 2, stride=2), blk(2 * c[1], c[1])
        self.u1, self.d1 = nn.ConvTranspose2d(c[1], c[0], 2, stride=2), blk(2 * c[0], c[0])
        self.out = nn.Conv2d(c[0], 2, 1)

    def forward(self, x):
        e1 = self.e1(x)
        e2 = self.e2(nn.functional.max_pool2d(e1, 2))
        b = self.b(nn.functional.max_pool2d(e2, 2))
        d2 = self.d2(torch.cat([self.u2(b), e2], 1))
        return self.out(self.d1(torch.cat([self.u1(d2), e1], 1)))


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


def train_unet(x, y, train, val, budget, crop, seed=0):
    """Adam (lr 1e-3) on batches of 4 random crops for ``budget`` seconds; keeps the parameters with the
    least pixel error on ``val`` (images, labels), checked 6 times."""
    torch.manual_seed(seed)
    net, gen = UNet(), torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    best, best_err, t0, steps = None, 1e9, time.perf_counter(), 0
    val_x, val_y = val[0][:, None], val[1]
    next_eval = budget / 6
    while time.perf_counter() - t0 < budget:
        xb, yb = crops(x, y, train, gen, 4, crop)
        loss = nn.functional.cross_entropy(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
        if time.perf_counter() - t0 >= next_eval or time.perf_counter() - t0 >= budget:
            next_eval += budget / 6
            with torch.no_grad():
                err = float((net(val_x).argmax(1) != val_y).float().mean())
            if err < best_err:
                best_err, best = err, {k: v.clone() for k, v in net.state_dict().items()}
    if best is not None:
        net.load_state_dict(best)
    return net, time.perf_counter() - t0, steps


def unet_score(net, img):
    with torch.no_grad():
        return torch.softmax(net(torch.as_tensor(img)[None, None]), 1)[0, 1].numpy()
