"""Membrane segmentation on ISBI 2012 (``../shared/data/isbi2012_membranes.npz``): flows against peers.

Splits: train 0-15, validation 16-19 (model selection only), test 20-23.  Methods: pixel-wise rounding
to the class means; uniform full and linearized assignment flows; the Sect. 4.4 predictor; the deep
linearized flow (``flowlearn.learning.labeler``); a random forest on
``skimage.feature.multiscale_basic_features``; Potts MAP by graph cuts (PyMaxflow, exact for two labels)
on the flows' data term; a small U-Net trained for the same CPU time.  Every learned method gets
``--budget-seconds`` of training time.  Columns: pixel error %, membrane F1, adapted Rand error (on the
connected cell-interior regions, ``skimage.metrics.adapted_rand_error``), parameters, training seconds.
Writes ``segmentation.json``, ``segmentation.png`` and the state dicts ``deep_flow.pt`` / ``unet.pt`` to
``--out``.

    pip install -c constraints.txt -e ".[bench]"
    OMP_NUM_THREADS=2 python benchmarks/segmentation.py --budget-seconds 180 --threads 2 --out runs/segmentation
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "isbi2012_membranes.npz"
TRAIN, VAL, TEST = list(range(16)), list(range(16, 20)), list(range(20, 24))


def metrics(pred, truth) -> dict:
    from skimage.measure import label as components
    from skimage.metrics import adapted_rand_error

    pred, truth = np.asarray(pred).astype(np.int64), np.asarray(truth).astype(np.int64)
    tp = np.sum((pred == 1) & (truth == 1))
    f1 = 2 * tp / max(np.sum(pred == 1) + np.sum(truth == 1), 1)
    are = adapted_rand_error(components(truth == 0, connectivity=1), components(pred == 0, connectivity=1))[0]
    return {"pixel_error": 100 * float(np.mean(pred != truth)), "f1": float(f1), "rand_error": float(are)}


def means(x, y):
    return np.array([x[y == j].mean() for j in (0, 1)])


def distances(img, protos):
    return (img[..., None] - protos) ** 2  # (H, W, 2)


# ----------------------------------------------------------------------------------------- peers
def graph_cut(img, protos, lam, rho):
    import maxflow

    D = distances(img, protos) / rho
    g = maxflow.Graph[float]()
    nodes = g.add_grid_nodes(img.shape)
    g.add_grid_edges(nodes, lam)
    g.add_grid_tedges(nodes, D[..., 1], D[..., 0])  # sink side pays the source capacity: label 1
    g.maxflow()
    return g.get_grid_segments(nodes).astype(np.int64)


def rf_features(img):
    from skimage.feature import multiscale_basic_features

    return multiscale_basic_features(img, intensity=True, edges=True, texture=True, sigma_min=1, sigma_max=16,
                                     num_sigma=5)


def train_rf(x, y, budget, seed=0):
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    feats = [rf_features(x[i]) for i in TRAIN]
    per = 4000
    X, Y = [], []
    for f, i in zip(feats, TRAIN):
        k = rng.choice(f.shape[0] * f.shape[1], per, replace=False)
        X.append(f.reshape(-1, f.shape[-1])[k])
        Y.append(y[i].reshape(-1)[k])
    rf = RandomForestClassifier(n_estimators=100, n_jobs=torch.get_num_threads(), random_state=seed,
                                min_samples_leaf=2).fit(np.concatenate(X), np.concatenate(Y))
    nodes = sum(t.tree_.node_count for t in rf.estimators_)
    return rf, time.perf_counter() - t0, nodes


class UNet(nn.Module):
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


def crops(x, y, gen, n, c):
    xs, ys = [], []
    for _ in range(n):
        i = TRAIN[int(torch.randint(len(TRAIN), (1,), generator=gen))]
        a, b = (int(torch.randint(x.shape[1] - c + 1, (1,), generator=gen)) for _ in range(2))
        xi, yi = x[i, a:a + c, b:b + c], y[i, a:a + c, b:b + c]
        for ax, f in enumerate(torch.randint(2, (2,), generator=gen)):
            if int(f):
                xi, yi = xi.flip(ax), yi.flip(ax)
        xs.append(xi)
        ys.append(yi)
    return torch.stack(xs)[:, None], torch.stack(ys)


def train_unet(x, y, budget, crop, seed=0):
    torch.manual_seed(seed)
    net, gen = UNet(), torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    best, best_err, t0, steps = None, 1e9, time.perf_counter(), 0
    val_x, val_y = x[VAL, :256, :256][:, None], y[VAL, :256, :256]
    next_eval = budget / 6
    while time.perf_counter() - t0 < budget:
        xb, yb = crops(x, y, gen, 4, crop)
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


# ----------------------------------------------------------------------------------------- flows
def flow_label(img, protos, flow, rho, T=1.0):
    from flowlearn.labeling import label

    r = label(img[..., None].astype(np.float64), protos[:, None], flow=flow, rho=rho, T=T, throw=False)
    return r.label_image(*img.shape).numpy()


def train_predictor(x, y, protos, budget, crop, rho, T):
    from flowlearn.learning.predictor import PatchPredictor, PredictorTrainer, clean_windows, make_sample

    samples, wins = [], []
    for i in TRAIN[:4]:  # crops of images 0-3 (the setting)
        img, lab = x[i, :crop, :crop].numpy()[..., None].astype(np.float64), y[i, :crop, :crop].numpy()
        samples.append(make_sample(img, lab, protos[:, None], rho=rho, T=T))
        wins.append(clean_windows(protos[lab][..., None], lab))
    pred = PatchPredictor(50, feature_dim=samples[0].features.shape[1]).double()
    t0 = time.perf_counter()
    pred.initialize(torch.cat([w[0] for w in wins]), torch.cat([w[1] for w in wins]))
    t_init = time.perf_counter() - t0
    probe = PredictorTrainer(lr=0.05, iters=2, show_progress=False).fit(pred, samples)
    per = probe.stats["seconds"] / 2
    iters = max(1, int((budget - t_init - probe.stats["seconds"]) / per))
    res = PredictorTrainer(lr=0.05, iters=iters, show_progress=False).fit(pred, samples)
    return pred, time.perf_counter() - t0, iters + 2, res


def predictor_label(pred, img, protos, rho, T):
    from flowlearn.learning.predictor import make_sample, predict_tangent

    s = make_sample(img[..., None].astype(np.float64), np.zeros(img.shape, np.int64), protos[:, None], rho=rho, T=T)
    with torch.no_grad():
        return predict_tangent(s.problem, pred(s.features)).argmax(-1).reshape(img.shape).numpy()


def train_deep(x, y, crop, args):
    """The deep flow with the recipe of the README: fixed filter bank, classifier data term warmed up on
    random pixels for ``--deep-pretrain`` steps, then ``--deep-steps`` end-to-end steps on random crops
    (cosine step size), the validation images picking the kept parameters."""
    from flowlearn.learning.labeler import LabelerConfig, LabelerTrainer

    xs, ys = x[..., None], y
    val = (xs[VAL, :256, :256].contiguous(), ys[VAL, :256, :256].contiguous())
    total = args.deep_pretrain + args.deep_steps
    cfg = LabelerConfig(crop=crop, batch=2, layers=args.layers, features=8, hidden=16, lr=0.01, rho=args.deep_rho,
                        T=1.0, iterations=total, eval_every=max(1, args.deep_steps // 10), checkpoint_every=10**9,
                        checkpoint_seconds=0, filter_bank=True, data_term="classifier",
                        pretrain_steps=args.deep_pretrain, final_lr_fraction=0.1)
    t0 = time.perf_counter()
    model, res = LabelerTrainer(cfg, show_progress=True).fit(xs, ys, TRAIN, val)
    return model, time.perf_counter() - t0, total, res


# ----------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--budget-seconds", type=float, default=240.0, help="training time per learned method")
    ap.add_argument("--quick", action="store_true", help="tiny budgets, 128x128 test crops (a smoke run)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--crop", type=int, default=128, help="training crop size")
    ap.add_argument("--test-size", type=int, default=512, help="evaluate on the top-left NxN of the test images")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--deep-rho", type=float, default=1.0, help="rho of the deep flow (its data term is a -log p)")
    ap.add_argument("--deep-pretrain", type=int, default=1000, help="data-term warm-up steps of the deep flow")
    ap.add_argument("--deep-steps", type=int, default=2500, help="end-to-end steps of the deep flow")
    ap.add_argument("--unet-seconds", type=float, default=None,
                    help="U-Net training time (default: the deep flow's measured training time, else --budget-seconds)")
    ap.add_argument("--methods", default="all", help="comma-separated subset of: flows,predictor,deep,rf,unet")
    ap.add_argument("--out", default="runs/segmentation")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    budget, n = (10.0, 128) if args.quick else (args.budget_seconds, args.test_size)
    d = np.load(args.data)
    x = torch.as_tensor(d["images"].astype(np.float32) / 255)
    y = torch.as_tensor(d["labels"].astype(np.int64))
    xn, yn = x.numpy(), y.numpy()
    protos = means(xn[TRAIN], yn[TRAIN])
    rho_flow = float(np.mean((protos[1] - protos[0]) ** 2))  # data term of order one
    test = [(xn[i, :n, :n], yn[i, :n, :n]) for i in TEST]
    val = [(xn[i, :256, :256], yn[i, :256, :256]) for i in VAL]
    rows, preds, saved = {}, {}, {}
    deep_seconds = None
    want = lambda m: args.methods == "all" or m in args.methods.split(",")

    def record(name, fn, params, seconds, **extra):
        t0 = time.perf_counter()
        out = [fn(img) for img, _ in test]
        ms = [metrics(p, t) for p, (_, t) in zip(out, test)]
        rows[name] = {k: float(np.mean([m[k] for m in ms])) for k in ms[0]}
        rows[name].update(per_image_pixel_error=[m["pixel_error"] for m in ms], parameters=int(params),
                          train_seconds=round(seconds, 1), eval_seconds=round(time.perf_counter() - t0, 1), **extra)
        preds[name] = out[0]
        print(f"{name:28s} {rows[name]['pixel_error']:6.2f} % F1 {rows[name]['f1']:.3f} "
              f"ARE {rows[name]['rand_error']:.3f} params {params} train {seconds:.0f} s", flush=True)

    if want("flows"):
        record("pixel-wise rounding", lambda img: np.argmin(distances(img, protos), -1), 2, 0.0)

        def sel(make, candidates):  # model selection on the validation images
            return min(candidates, key=lambda c: np.mean([np.mean(make(c)(v) != t) for v, t in val]))

        rho = sel(lambda r: (lambda img: flow_label(img, protos, "linearized", r)),
                  [rho_flow * s for s in (0.3, 1, 3)]) if not args.quick else rho_flow
        record("uniform linearized flow", lambda img: flow_label(img, protos, "linearized", rho), 2, 0.0, rho=rho)
        record("uniform full flow", lambda img: flow_label(img, protos, "full", rho), 2, 0.0, rho=rho)
        lam = sel(lambda lm: (lambda img: graph_cut(img, protos, lm, rho_flow)), [0.1, 0.3, 1.0, 3.0])
        record("graph cuts (Potts MAP)", lambda img: graph_cut(img, protos, lam, rho_flow), 3, 0.0, lam=lam)
    if want("predictor"):
        pred, secs, iters, _ = train_predictor(x, y, protos, budget, args.crop, rho=0.1, T=1.0)
        record("Sect. 4.4 predictor", lambda img: predictor_label(pred, img, protos, 0.1, 1.0),
               sum(p.numel() for p in pred.parameters()), secs, iterations=iters)
    if want("deep"):
        model, secs, iters, res = train_deep(x, y, args.crop, args) if not args.quick else \
            train_deep(x, y, args.crop, argparse.Namespace(**{**vars(args), "deep_pretrain": 20, "deep_steps": 10}))
        deep_seconds = secs
        saved["deep_flow"] = model
        record(f"deep linearized flow (K={args.layers})",
               lambda img: model.predict(torch.as_tensor(img)[..., None]).numpy(), model.num_parameters(), secs,
               iterations=iters, best=res.best, rho=args.deep_rho)
    if want("rf"):
        rf, secs, nodes = train_rf(xn, yn, budget)
        record("random forest (100 trees)", lambda img: rf.predict(rf_features(img).reshape(-1, rf.n_features_in_))
               .reshape(img.shape), nodes, secs, note="parameters = tree nodes")
    if want("unet"):
        unet_budget = args.unet_seconds or deep_seconds or budget
        net, secs, steps = train_unet(x, y, unet_budget, args.crop)
        saved["unet"] = net
        record("U-Net (small)", lambda img: net(torch.as_tensor(img)[None, None]).argmax(1)[0].detach().numpy(),
               sum(p.numel() for p in net.parameters()), secs, iterations=steps)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"budget_seconds": budget, "deep_pretrain": args.deep_pretrain, "deep_steps": args.deep_steps, "threads": args.threads, "crop": args.crop, "test_size": n,
            "test_images": TEST, "train_images": TRAIN, "validation_images": VAL, "torch": torch.__version__}
    (out / "segmentation.json").write_text(json.dumps({"settings": meta, "methods": rows}, indent=1))
    for name, module in saved.items():   # the trained torch models, for later analysis (state dicts)
        torch.save(module.state_dict(), out / f"{name}.pt")
    panel(out / "segmentation.png", test[0], preds)
    print(f"wrote {out}/segmentation.json, segmentation.png")
    return 0


def panel(path, first, preds):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img, truth = first
    items = [("image / truth", img, truth)] + [(k, p, p != truth) for k, p in preds.items()]
    fig, axes = plt.subplots(len(items), 2, figsize=(5, 2.5 * len(items)))
    for row, (name, a, b) in zip(axes, items):
        row[0].imshow(a, cmap="gray")
        row[1].imshow(b, cmap="gray" if name == "image / truth" else "Reds")
        row[0].set_ylabel(name, fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("image / labels")
    axes[0, 1].set_title("truth / errors (red)")
    fig.suptitle(f"ISBI 2012 test image {TEST[0]}: membrane labelings", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
