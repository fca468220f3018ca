"""Membrane segmentation on ISBI 2012 (``../shared/data/isbi2012_membranes.npz``): the deep flow against peers.

Splits: train 0-15, validation 16-19 (model selection and the threshold), test: the full 512x512 images
20-23.  Methods, each learned one trained for the same wall time ``--budget-seconds`` (one run, ``--threads``
threads): the deep linearized flow (the recipe of ``flowlearn.experiments.isbi``, its step count fitted to
the budget by a timing probe); MONAI's ``BasicUNet``; ``BasicUNet`` + ``AssignmentFlowHead``; a random forest
on ilastik-style features; graph cuts (exact Potts MAP, ``benchmarks.segmentation_peers``); and, scored only,
the shipped ``isbi-membranes`` model (the README's ``flowlearn train-labeler`` command with its defaults).  A second table
trains the flow, the forest and the ``BasicUNet`` from seeded scribbles (about 1 % of the pixels of the
training and validation images, ``benchmarks.scribbles``).

Scores (``flowlearn.evaluation``, the challenge's): V_rand and V_info after border thinning at the one
threshold of 0.0, 0.1, ..., 1.0 with the largest V_rand on the full validation images
(:func:`~flowlearn.evaluation.tune_threshold`), and their maxima over the thresholds on the test images (as
the challenge scored); Rand error and pixel error as 1 - max F (ISBI 2012); the pixel error % at t = 0.5;
the expected calibration error (10 bins) of the test probabilities.  Graph cuts have no probabilities: their
"threshold" is the bias ``log(t / (1 - t))`` on the membrane label's cost, t in 0.1, ..., 0.9, and their ECE
is n/a.  Writes ``segmentation.json``, ``segmentation.png`` (test image 20) and ``reliability.png`` to ``--out``.

    pip install -c constraints.txt -e ".[bench]"
    OMP_NUM_THREADS=2 python -m benchmarks.segmentation --budget-seconds 240 --threads 2 --out runs/segmentation
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from benchmarks import segmentation_peers as peers
from benchmarks import segmentation_plots as plots
from benchmarks.scribbles import IGNORE, scribbles
from flowlearn.evaluation import expected_calibration_error, isbi_scores, tune_threshold
from flowlearn.evaluation.isbi import ISBI_THRESHOLDS, ISBIScores
from flowlearn.experiments.isbi import TEST, TRAIN, deep_flow_score, labeler_config
from flowlearn.experiments.isbi import VALIDATION as VAL
from flowlearn.io import save_json
from flowlearn.learning.labeler import LabelerTrainer

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "isbi2012_membranes.npz"
METHODS = {"deep": "deep flow", "unet": "BasicUNet", "unet_head": "BasicUNet + flow head", "rf": "random forest",
           "gc": "graph cuts", "shipped": "isbi-membranes"}
SCRIBBLE_METHODS = ("deep", "rf", "unet")
GC_BIASES = tuple(k / 10 for k in range(1, 10))
CURVES = ("v_rand_curve", "v_info_curve", "rand_f_curve", "pixel_f_curve")


# ----------------------------------------------------------------------------------------- the deep flow
def plan_flow_steps(budget, setup, warm_step, flow_step, evaluation, *, evals=11, ratio=0.5, minimum=10):
    """``(pretrain_steps, steps)`` of the recipe that fit ``budget`` seconds: ``setup + evals * evaluation
    + pretrain_steps * warm_step + steps * flow_step <= budget`` with ``pretrain_steps = ratio * steps`` (the
    recipe's 1000 : 2000); at least ``minimum`` flow steps."""
    steps = max(minimum, int((budget - setup - evals * evaluation) / (flow_step + ratio * warm_step)))
    return max(1, round(ratio * steps)), steps


def probe_flow(x, y, train, val, config, warm=10, flow=12):
    """Time the recipe on 2 training images and 1 validation image (``warm`` warm-up and ``flow`` flow steps,
    one validation; medians of the step times); returns ``(seconds, {setup_per_image, warm_step, flow_step,
    eval_per_image})``."""
    cfg = dataclasses.replace(config, pretrain_steps=warm, iterations=warm + flow, eval_every=warm + flow)
    marks, t0 = [], time.perf_counter()
    LabelerTrainer(cfg, show_progress=False).fit(x, y, train[:2], (val[0][:1], val[1][:1]),
                                                 callback=lambda it, rec: marks.append(rec["seconds"]))
    total = time.perf_counter() - t0
    step = np.diff([0.0, *marks])
    flow_step = float(np.median(step[warm:-1]))
    # the rest is the filter bank: twice per training image (standardisation, inputs), once per validation image
    return total, {"setup_per_image": (total - marks[-1]) / 5, "warm_step": float(np.median(step[:warm])),
                   "flow_step": flow_step, "eval_per_image": max(float(step[-1]) - flow_step, 0.0)}


def train_flow(x, y, train, val, budget, *, ignore=None, quick=False, log=print):
    """The deep flow of ``labeler_config()`` with its step count fitted to ``budget`` (the probe's time is not
    counted); ``val = (images, labels)`` selects the kept parameters; ``quick``: a shorter probe and at least
    4 (not 10) flow steps.  ``(model, seconds, steps, info)``."""
    recipe = dataclasses.replace(labeler_config(), ignore_label=ignore)
    xs, vx = x[..., None], (val[0][..., None].contiguous(), val[1].contiguous())
    probe_seconds, timing = probe_flow(xs, y, train, vx, recipe, *((4, 4) if quick else (10, 12)))
    pretrain, steps = plan_flow_steps(budget, timing["setup_per_image"] * (2 * len(train) + len(vx[0])),
                                      timing["warm_step"], timing["flow_step"], timing["eval_per_image"] * len(vx[0]),
                                      minimum=4 if quick else 10)
    cfg = dataclasses.replace(labeler_config(pretrain_steps=pretrain, steps=steps), ignore_label=ignore)
    log(f"  deep flow: probe {probe_seconds:.0f} s (flow step {timing['flow_step']:.3f} s) -> {pretrain} warm-up "
        f"+ {steps} flow steps")
    t0 = time.perf_counter()

    def progress(it, rec):
        if rec.get("validation_error") is not None:
            log(f"  deep flow: {time.perf_counter() - t0:5.0f} s, step {it + 1}/{cfg.iterations}, loss "
                f"{rec['loss']:.3f}, validation error {rec['validation_error']:.2f} %")

    model, res = LabelerTrainer(cfg, show_progress=False).fit(xs, y, train, vx, callback=progress)
    info = {"probe_seconds": probe_seconds, "timing": timing, "pretrain_steps": pretrain, "flow_steps": steps,
            "best": res.best}
    return model, time.perf_counter() - t0, cfg.iterations, info


# ----------------------------------------------------------------------------------------- scores
def scores_of_labelings(labels_at, truth, thresholds=GC_BIASES) -> ISBIScores:
    """:class:`ISBIScores` of binary membrane maps ``labels_at(t)`` ``(N, H, W)``, one per operating point."""
    per = [isbi_scores(labels_at(t), truth, (0.5,)) for t in thresholds]
    vr, vi, rf, pf = (np.array([getattr(s, c)[0] for s in per]) for c in CURVES)
    ts, i, j = np.asarray(thresholds, float), int(np.argmax(vr)), int(np.argmax(vi))
    return ISBIScores(ts, float(vr[i]), float(ts[i]), float(vi[j]), float(ts[j]), 1 - float(rf.max()),
                      1 - float(pf.max()), vr, vi, rf, pf)


def score_row(val_scores: ISBIScores, test_scores: ISBIScores, t: float) -> dict:
    """The test scores at the validation threshold ``t`` and maximised over the thresholds."""
    k = int(np.argmin(np.abs(test_scores.thresholds - t)))
    return {"v_rand": float(test_scores.v_rand_curve[k]), "v_info": float(test_scores.v_info_curve[k]),
            "threshold": float(t), "v_rand_max": test_scores.v_rand, "v_rand_max_threshold": test_scores.v_rand_threshold,
            "v_info_max": test_scores.v_info, "v_info_max_threshold": test_scores.v_info_threshold,
            "rand_error": test_scores.rand_error, "one_minus_max_f": test_scores.pixel_error,
            "validation_v_rand": val_scores.v_rand, "thresholds": test_scores.thresholds,
            "test_curves": {c: getattr(test_scores, c) for c in CURVES}}


def evaluate_probabilities(score, val, test):
    """Row and test maps of a method given by its membrane-probability function ``score(image)``."""
    t0 = time.perf_counter()
    val_p = np.stack([np.clip(score(img), 0, 1) for img in val[0]]).astype(np.float64)
    test_p = np.stack([np.clip(score(img), 0, 1) for img in test[0]]).astype(np.float64)
    infer = time.perf_counter() - t0
    t, val_scores = tune_threshold(val_p, val[1])
    row = score_row(val_scores, isbi_scores(test_p, test[1]), t)
    wrong = (test_p >= 0.5) != test[1]
    row.update(pixel_error=100 * float(wrong.mean()), per_image_pixel_error=100 * wrong.mean(axis=(1, 2)),
               ece=expected_calibration_error(test_p, test[1]), inference_seconds=infer)
    return row, test_p, test_p >= t


def evaluate_labelings(labels_at, val, test):
    """Row and test maps of a method given by ``labels_at(image, t)`` (graph cuts: no probabilities)."""
    val_scores = scores_of_labelings(lambda t: np.stack([labels_at(img, t) for img in val[0]]), val[1])
    t = val_scores.v_rand_threshold
    at = {b: np.stack([labels_at(img, b) for img in test[0]]) for b in GC_BIASES}
    row = score_row(val_scores, scores_of_labelings(at.__getitem__, test[1]), t)
    wrong = at[0.5] != test[1]
    row.update(pixel_error=100 * float(wrong.mean()), per_image_pixel_error=100 * wrong.mean(axis=(1, 2)),
               ece=float("nan"))
    return row, at[0.5].astype(np.float64), at[t].astype(bool)


# ----------------------------------------------------------------------------------------- one table
def run_table(table, key, x, y, train, sel, val, test, budget, args, log=print):
    """Train method ``key`` on ``y`` (dense or scribbles) and score it; ``(row, test probability maps,
    test membrane maps at the chosen threshold)``."""
    ignore = IGNORE if table == "scribbles" else None
    xn, yn = x.numpy(), y.numpy()
    extra: dict = {}
    if key == "deep":
        model, secs, steps, extra = train_flow(x, y, train, sel, budget, ignore=ignore, quick=args.quick, log=log)
        score, params = (lambda img: deep_flow_score(model, img)), model.num_parameters()
    elif key in ("unet", "unet_head"):
        net, secs, steps, extra["best"] = peers.train_unet(
            x, y, train, sel, budget, head_features=args.head_features if key == "unet_head" else None,
            crop=args.crop, ignore=ignore, seed=args.seed, name=METHODS[key], log=log)
        score, params = (lambda img: peers.unet_score(net, img)), sum(p.numel() for p in net.parameters())
    elif key == "shipped":    # the shipped model: the README's train-labeler command with its defaults
        import flowlearn

        model, meta = flowlearn.load_model("isbi-membranes")
        score = lambda img: model.probabilities(torch.from_numpy(np.ascontiguousarray(img))[..., None])[..., 1].numpy()
        params, secs, steps = model.num_parameters(), float("nan"), None
        extra["note"] = "trained by `flowlearn train-labeler` with its defaults (model card: 750 s, 1 thread)"
    elif key == "rf":
        rf, secs, params = peers.train_rf(xn, yn, train, ignore=ignore, seed=args.seed)
        score, steps, extra["note"] = (lambda img: peers.rf_score(rf, img)), None, "parameters = tree nodes"
    else:   # graph cuts on the two-prototype data term (class means of the training images)
        t0 = time.perf_counter()
        protos = np.array([xn[train][yn[train] == j].mean() for j in (0, 1)])
        rho = float((protos[1] - protos[0]) ** 2)
        data = lambda img: (img[..., None] - protos) ** 2 / rho
        sel_np = (sel[0].numpy(), sel[1].numpy())
        lam = max((0.1, 0.3, 1.0, 3.0), key=lambda lm: isbi_scores(
            np.stack([peers.graph_cut(data(v), lm) for v in sel_np[0]]), sel_np[1], (0.5,)).v_rand)
        secs, steps, params, extra = time.perf_counter() - t0, None, 3, {"lam": lam, "prototypes": protos}
        t1 = time.perf_counter()
        row, prob, at_t = evaluate_labelings(lambda img, t: peers.graph_cut(data(img), lam, t), val, test)
        row.update(parameters=params, train_seconds=secs, steps=steps, eval_seconds=time.perf_counter() - t1, **extra)
        return row, prob, at_t
    t1 = time.perf_counter()
    row, prob, at_t = evaluate_probabilities(score, val, test)
    row.update(parameters=int(params), train_seconds=secs, steps=steps, eval_seconds=time.perf_counter() - t1, **extra)
    return row, prob, at_t


COLUMNS = (("V_rand", "v_rand", "{:.4f}"), ("V_info", "v_info", "{:.4f}"), ("t", "threshold", "{:.1f}"),
           ("V_rand max", "v_rand_max", "{:.4f}"), ("V_info max", "v_info_max", "{:.4f}"),
           ("Rand err", "rand_error", "{:.4f}"), ("1-max F", "one_minus_max_f", "{:.4f}"),
           ("pix err % t=.5", "pixel_error", "{:.2f}"), ("ECE", "ece", "{:.4f}"), ("params", "parameters", "{}"),
           ("train s", "train_seconds", "{:.0f}"), ("steps", "steps", "{}"))


def format_table(rows: dict) -> str:
    """A plain-text table of ``{table: {method: row}}``."""
    head = f"{'table':9s} {'method':22s} " + " ".join(f"{c:>{max(len(c), 7)}s}" for c, _, _ in COLUMNS)
    lines = [head, "-" * len(head)]
    for table, methods in rows.items():
        for name, r in methods.items():
            cells = []
            for c, k, fmt in COLUMNS:
                v = r.get(k)
                s = "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else fmt.format(v)
                cells.append(f"{s:>{max(len(c), 7)}s}")
            lines.append(f"{table:9s} {name:22s} " + " ".join(cells))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--budget-seconds", type=float, default=240.0, help="training wall time of each learned method")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 6 s budgets, training images 0-1, 128x128 validation and test crops")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default="all", help=f"comma-separated subset of: {','.join(METHODS)}")
    ap.add_argument("--tables", default="dense,scribbles", help="comma-separated subset of: dense,scribbles")
    ap.add_argument("--crop", type=int, default=128, help="training crop size of the U-Nets (the flow's recipe: 128)")
    ap.add_argument("--head-features", type=int, default=peers.HEAD_FEATURES,
                    help="BasicUNet output channels fed to the flow head")
    ap.add_argument("--scribble-fraction", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0, help="seed of the scribbles and of the peers' training")
    ap.add_argument("--out", default="runs/segmentation")
    args = ap.parse_args(argv)
    methods = list(METHODS) if args.methods == "all" else args.methods.split(",")
    tables = args.tables.split(",")
    if set(methods) - set(METHODS) or set(tables) - {"dense", "scribbles"}:
        ap.error(f"--methods must name some of {list(METHODS)}, --tables some of dense,scribbles")
    torch.set_num_threads(args.threads)
    budget, n, s, train = (6.0, 128, 128, TRAIN[:2]) if args.quick else (args.budget_seconds, 512, 256, TRAIN)
    d = np.load(args.data)
    x = torch.as_tensor(d["images"].astype(np.float32) / 255)
    dense = torch.as_tensor(d["labels"].astype(np.int64))
    xn, yn = x.numpy(), dense.numpy()
    val = (xn[VAL, :n, :n], yn[VAL, :n, :n])        # the threshold (full validation images)
    test = (xn[TEST, :n, :n], yn[TEST, :n, :n])
    labels = {"dense": dense}
    if "scribbles" in tables:
        sparse = np.full(yn.shape, IGNORE, np.int64)
        sparse[TRAIN + VAL] = scribbles(yn[TRAIN + VAL], args.scribble_fraction, seed=args.seed)
        labels["scribbles"] = torch.as_tensor(sparse)
    rows, probs, maps = {}, {}, {}
    t_start = time.perf_counter()
    for table in tables:
        y = labels[table]
        sel = (x[VAL, :s, :s].contiguous(), y[VAL, :s, :s].contiguous())   # model selection (labelled pixels)
        for key in methods:
            if table == "scribbles" and key not in SCRIBBLE_METHODS:
                continue
            print(f"[{table}] {METHODS[key]}: training ({time.perf_counter() - t_start:.0f} s elapsed)", flush=True)
            row, prob, at_t = run_table(table, key, x, y, train, sel, val, test, budget, args)
            rows.setdefault(table, {})[METHODS[key]] = row
            probs[table, METHODS[key]], maps[table, METHODS[key]] = prob, at_t
            print(f"[{table}] {METHODS[key]}: V_rand {row['v_rand']:.4f} (t={row['threshold']:.1f}), V_info "
                  f"{row['v_info']:.4f}, max {row['v_rand_max']:.4f} / {row['v_info_max']:.4f}, pixel error "
                  f"{row['pixel_error']:.2f} %, ECE {row['ece']:.4f}, train {row['train_seconds']:.0f} s, "
                  f"evaluation {row['eval_seconds']:.0f} s", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"budget_seconds": budget, "threads": args.threads, "quick": args.quick, "train_images": train,
                "validation_images": VAL, "test_images": TEST, "test_size": n, "model_selection_size": s,
                "thresholds": ISBI_THRESHOLDS, "graph_cut_biases": GC_BIASES, "crop": args.crop, "seed": args.seed,
                "head_features": args.head_features, "class_balance": 0.5, "scribble_fraction": args.scribble_fraction,
                "scribble_labelled_fraction": float(np.mean(labels["scribbles"].numpy()[TRAIN] != IGNORE))
                if "scribbles" in labels else None,
                "torch": torch.__version__, "monai": version("monai"), "total_seconds": time.perf_counter() - t_start,
                "protocol": __doc__.split("\n\n")[1:3]}
    save_json(out / "segmentation.json", {"settings": settings, "tables": rows})
    plots.panel(out / "segmentation.png", (test[0][0], test[1][0]), probs, maps, rows,
                scribble=(xn[0], labels["scribbles"].numpy()[0]) if "scribbles" in labels else None)
    plots.reliability(out / "reliability.png", probs, test[1], rows)
    print(format_table(rows))
    print(f"wrote {out}/segmentation.json, segmentation.png, reliability.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
