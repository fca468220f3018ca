"""Membrane segmentation on ISBI 2012 (``../shared/data/isbi2012_membranes.npz``): flows against peers.

Splits: train 0-15, validation 16-19 (model selection only), test 20-23.  Methods: pixel-wise rounding
to the class means; uniform full and linearized assignment flows; the Sect. 4.4 predictor; the deep
linearized flow (the recipe of ``flowlearn.experiments.isbi``); a random forest on
``skimage.feature.multiscale_basic_features``; Potts MAP by graph cuts (PyMaxflow, exact for two labels)
on the flows' data term; a small U-Net trained for the same CPU time as the deep flow.  Columns: pixel
error %, membrane F1, adapted Rand error (on the connected cell-interior regions,
``skimage.metrics.adapted_rand_error``), parameters, training seconds; each at the method's own decision
(t = 0.5) and at the operating point chosen on the validation images by adapted Rand error, the same
rule for every method (``flowlearn.evaluation.tune_threshold``).  Writes ``segmentation.json``,
``segmentation.png``, the test scores ``scores.npz`` and the state dicts ``deep_flow.pt`` / ``unet.pt``
to ``--out`` (``--load DIR`` reuses them); ``--train-images K`` trains on images 0..K-1 only.

    pip install -c constraints.txt -e ".[bench]"
    OMP_NUM_THREADS=2 python -m benchmarks.segmentation --budget-seconds 180 --threads 2 --out runs/segmentation
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import segmentation_peers as peers
from flowlearn.evaluation import tune_threshold
from flowlearn.evaluation.segmentation import (
    THRESHOLDS,
    mean_segmentation_metrics,
    segmentation_metrics,
    threshold_labels,
)
from flowlearn.experiments.isbi import TEST, TRAIN, deep_flow_score, labeler_config, train_deep_flow
from flowlearn.experiments.isbi import VALIDATION as VAL
from flowlearn.io import save_figure, save_json

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "isbi2012_membranes.npz"


def means(x, y):
    return np.array([x[y == j].mean() for j in (0, 1)])


def distances(img, protos):
    return (img[..., None] - protos) ** 2  # (H, W, 2)


# ----------------------------------------------------------------------------------------- flows
def flow_score(img, protos, flow, rho, T=1.0):
    """Membrane probability ``W_T[:, 1]`` of a uniform flow on the two-prototype data term."""
    from flowlearn.labeling import label

    r = label(img[..., None].astype(np.float64), protos[:, None], flow=flow, rho=rho, T=T, throw=False)
    return r.assignment[:, 1].reshape(img.shape).numpy()


def train_predictor(x, y, protos, budget, crop, rho, T, train=TRAIN):
    from flowlearn.learning.predictor import (
        PatchPredictor,
        PredictorTrainer,
        clean_windows,
        make_sample,
    )

    samples, wins = [], []
    for i in train[:4]:  # crops of the first 4 training images (the setting: images 0-3)
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


def predictor_score(pred, img, protos, rho, T):
    """Membrane probability of the Sect. 4.4 predictor: ``softmax(V_T)[:, 1]`` (``W_T = exp_1(V_T)``)."""
    from flowlearn.learning.predictor import make_sample, predict_tangent

    s = make_sample(img[..., None].astype(np.float64), np.zeros(img.shape, np.int64), protos[:, None], rho=rho, T=T)
    with torch.no_grad():
        return torch.softmax(predict_tangent(s.problem, pred(s.features)), -1)[:, 1].reshape(img.shape).numpy()


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
    ap.add_argument("--deep-class-balance", type=float, default=0.0,
                    help="class_balance of the deep flow's loss (membrane weight = frequency^-b)")
    ap.add_argument("--unet-seconds", type=float, default=None,
                    help="U-Net training time (default: the deep flow's measured training time, else --budget-seconds)")
    ap.add_argument("--methods", default="all", help="comma-separated subset of: flows,predictor,deep,rf,unet")
    ap.add_argument("--train-images", type=int, default=len(TRAIN),
                    help="train on the first K of the training images 0-15 (the data-efficiency study)")
    ap.add_argument("--load", default=None,
                    help="directory of an earlier run: reuse its deep_flow.pt / unet.pt instead of training them")
    ap.add_argument("--out", default="runs/segmentation")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    budget, n = (10.0, 128) if args.quick else (args.budget_seconds, args.test_size)
    if not 1 <= args.train_images <= len(TRAIN):
        ap.error(f"--train-images must be in 1..{len(TRAIN)}, got {args.train_images}")
    train = TRAIN[:args.train_images]
    d = np.load(args.data)
    x = torch.as_tensor(d["images"].astype(np.float32) / 255)
    y = torch.as_tensor(d["labels"].astype(np.int64))
    xn, yn = x.numpy(), y.numpy()
    protos = means(xn[train], yn[train])
    rho_flow = float(np.mean((protos[1] - protos[0]) ** 2))  # data term of order one
    test = [(xn[i, :n, :n], yn[i, :n, :n]) for i in TEST]
    val = [(xn[i, :256, :256], yn[i, :256, :256]) for i in VAL]       # quick selection of rho, lambda
    val_full = [(xn[i, :n, :n], yn[i, :n, :n]) for i in VAL]          # operating point by adapted Rand error
    rows, labelings, saved, scores = {}, {}, {}, {}
    deep_seconds = None
    want = lambda m: args.methods == "all" or m in args.methods.split(",")
    load = Path(args.load) if args.load else None

    def record(name, score, params, seconds, labels_at=threshold_labels, **extra):
        """Evaluate a method given by its score function: at its own decision (t = 0.5) and at the
        operating point tuned on the validation images by adapted Rand error."""
        t0 = time.perf_counter()
        test_scores = [score(img) for img, _ in test]
        eval_seconds = time.perf_counter() - t0
        truths = [t for _, t in test]
        t_best, val_table = tune_threshold(labels_at, [score(v) for v, _ in val_full], [t for _, t in val_full])
        at_half = [labels_at(s, 0.5) for s in test_scores]
        at_best = [labels_at(s, t_best) for s in test_scores]
        rows[name] = mean_segmentation_metrics(at_half, truths)
        rows[name].update(
            per_image_pixel_error=[segmentation_metrics(p, t)["pixel_error"] for p, t in zip(at_half, truths)],
            tuned={"threshold": t_best, **mean_segmentation_metrics(at_best, truths),
                   "validation_rand_error": val_table[t_best]["rand_error"]},
            parameters=int(params), train_seconds=round(seconds, 1), eval_seconds=round(eval_seconds, 1), **extra)
        labelings[name] = (at_half[0], at_best[0], t_best)
        if labels_at is threshold_labels:
            scores[name] = np.stack(test_scores).astype(np.float16)
        r, tu = rows[name], rows[name]["tuned"]
        print(f"{name:28s} {r['pixel_error']:6.2f} % F1 {r['f1']:.3f} ARE {r['rand_error']:.3f} | tuned t={t_best:.2f}: "
              f"{tu['pixel_error']:6.2f} % F1 {tu['f1']:.3f} ARE {tu['rand_error']:.3f} | params {params} "
              f"train {seconds:.0f} s", flush=True)

    if want("flows"):
        record("pixel-wise rounding", lambda img: softmax2(-distances(img, protos) / rho_flow), 2, 0.0)

        def sel(make, candidates):  # model selection on the validation images
            return min(candidates, key=lambda c: np.mean([np.mean(make(c)(v) != t) for v, t in val]))

        rho = sel(lambda r: (lambda img: flow_score(img, protos, "linearized", r) > 0.5),
                  [rho_flow * s for s in (0.3, 1, 3)]) if not args.quick else rho_flow
        record("uniform linearized flow", lambda img: flow_score(img, protos, "linearized", rho), 2, 0.0, rho=rho)
        record("uniform full flow", lambda img: flow_score(img, protos, "full", rho), 2, 0.0, rho=rho)
        gc_D = lambda img: distances(img, protos) / rho_flow
        lam = sel(lambda lm: (lambda img: peers.graph_cut(gc_D(img), lm)), [0.1, 0.3, 1.0, 3.0])
        record("graph cuts (Potts MAP)", gc_D, 3, 0.0, labels_at=lambda D, t: peers.graph_cut(D, lam, t), lam=lam)
    if want("predictor"):
        pred, secs, iters, _ = train_predictor(x, y, protos, budget, args.crop, rho=0.1, T=1.0, train=train)
        record("Sect. 4.4 predictor", lambda img: predictor_score(pred, img, protos, 0.1, 1.0),
               sum(p.numel() for p in pred.parameters()), secs, iterations=iters)
    if want("deep"):
        pretrain, steps = (20, 10) if args.quick else (args.deep_pretrain, args.deep_steps)
        cfg = labeler_config(crop=args.crop, layers=args.layers, rho=args.deep_rho, pretrain_steps=pretrain,
                             steps=steps, class_balance=args.deep_class_balance)
        model, secs, iters, res = train_deep_flow(x, y, cfg, train, load=load)
        deep_seconds = secs
        saved["deep_flow"] = model
        record(f"deep linearized flow (K={args.layers})", lambda img: deep_flow_score(model, img),
               model.num_parameters(), secs, iterations=iters, best=res.best if res else None, rho=args.deep_rho)
    if want("rf"):
        rf, secs, nodes = peers.train_rf(xn, yn, train)
        record("random forest (100 trees)", lambda img: peers.rf_score(rf, img), nodes, secs,
               note="parameters = tree nodes")
    if want("unet"):
        unet_budget = args.unet_seconds or deep_seconds or budget
        if load is not None and (load / "unet.pt").exists():
            net, secs, steps = peers.UNet(), float("nan"), 0
            net.load_state_dict(torch.load(load / "unet.pt", weights_only=True))
        else:
            net, secs, steps = peers.train_unet(x, y, train, (x[VAL, :256, :256], y[VAL, :256, :256]), unet_budget,
                                                args.crop)
        saved["unet"] = net
        record("U-Net (small)", lambda img: peers.unet_score(net, img), sum(p.numel() for p in net.parameters()),
               secs, iterations=steps)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"budget_seconds": budget, "deep_pretrain": args.deep_pretrain, "deep_steps": args.deep_steps,
            "deep_class_balance": args.deep_class_balance,
            "threads": args.threads, "crop": args.crop, "test_size": n, "test_images": TEST, "train_images": train,
            "validation_images": VAL, "thresholds": list(THRESHOLDS), "loaded_from": args.load,
            "torch": torch.__version__}
    save_json(out / "segmentation.json", {"settings": meta, "methods": rows})
    for name, module in saved.items():   # the trained torch models, for later analysis (state dicts)
        torch.save(module.state_dict(), out / f"{name}.pt")
    np.savez_compressed(out / "scores.npz", **{k.split(" (")[0].replace(" ", "_"): v for k, v in scores.items()})
    panel(out / "segmentation.png", test[0], labelings)
    print(f"wrote {out}/segmentation.json, segmentation.png, scores.npz")
    return 0


def softmax2(logits):
    """``softmax(logits)[..., 1]`` of ``(..., 2)`` logits."""
    return 1.0 / (1.0 + np.exp(logits[..., 0] - logits[..., 1]))


def panel(path, first, labelings):
    """One row per method: its labels, its errors at t = 0.5 and at the tuned operating point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img, truth = first
    fig, axes = plt.subplots(len(labelings) + 1, 3, figsize=(7.5, 2.5 * (len(labelings) + 1)))
    axes[0, 0].imshow(img, cmap="gray")
    axes[0, 1].imshow(truth, cmap="gray")
    axes[0, 2].axis("off")
    axes[0, 0].set_ylabel("image / truth", fontsize=8)
    axes[0, 0].set_title("image / labels")
    axes[0, 1].set_title("truth / errors at t=0.5 (red)")
    for row, (name, (half, best, t)) in zip(axes[1:], labelings.items()):
        row[0].imshow(half, cmap="gray")
        row[1].imshow(half != truth, cmap="Reds")
        row[2].imshow(best != truth, cmap="Reds")
        row[2].set_title(f"errors at tuned t={t:.2f}", fontsize=8)
        row[0].set_ylabel(name, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"ISBI 2012 test image {TEST[0]}: membrane labelings", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    save_figure(path, fig)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
