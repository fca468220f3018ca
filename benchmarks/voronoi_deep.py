"""Deep linearized flow against the single-layer Sect. 4.4 predictor on unseen Voronoi boundary images.

    .venv/bin/python -m benchmarks.voronoi_deep --out runs/voronoi_deep.json [--size 96] [--budget-seconds 120]

Scenario 1 of paper 000 (thin black cell boundaries on white, Gaussian noise at the default level):
training images are seeds 0-3, model selection uses seed 4, the test images are seeds 100-103 (new
cell layouts, new noise).  Methods, each trained for ``--budget-seconds`` on the same images:

* pixel-wise rounding to the prototypes and the uniform 3x3 linearized flow (no training);
* the Sect. 4.4 predictor (``PatchPredictor``, N = 50 nearest clean windows, rho = 0.1, T = 1, Adam through
  the closed-form gradient), the paper's single-layer parameter predictor;
* the deep linearized flow (``LabelerTrainer``: fixed filter bank, classifier data term warmed up on
  pixels, 3 layers with predicted weights).

Reports the label error (%) on every test image, parameters and training seconds; writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from flowlearn.data import make_voronoi
from flowlearn.evaluation import label_error
from flowlearn.io import save_json
from flowlearn.labeling import label
from flowlearn.learning.labeler import LabelerConfig, LabelerTrainer
from flowlearn.learning.predictor import PatchPredictor, PredictorTrainer, clean_windows, make_sample, predict_tangent

TRAIN, VAL, TEST = (0, 1, 2, 3), (4,), (100, 101, 102, 103)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--budget-seconds", type=float, default=120.0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    imgs = {s: make_voronoi(args.size, scenario="boundary", seed=s) for s in TRAIN + VAL + TEST}
    protos = imgs[0].prototypes
    rows = {}

    def record(name, fn, params, seconds, **extra):
        errs = [float(label_error(fn(imgs[s]), imgs[s].labels)) for s in TEST]
        rows[name] = {"label_error_percent": float(np.mean(errs)), "per_image": errs, "parameters": int(params),
                      "train_seconds": round(seconds, 1), **extra}
        print(f"{name:32s} {np.mean(errs):6.2f} %  per image {np.round(errs, 2)}  params {params} "
              f"train {seconds:.0f} s", flush=True)

    record("pixel-wise rounding", lambda v: np.argmin((v.image - protos[:, 0]) ** 2, -1), 0, 0.0)
    record("uniform linearized flow (3x3)", lambda v: label(v.image, protos, flow="linearized", rho=0.1, T=5.0)
           .label_image(args.size, args.size).numpy(), 0, 0.0)

    # the Sect. 4.4 predictor, single layer
    samples = [make_sample(imgs[s].image, imgs[s].labels, protos, rho=0.1, T=1.0) for s in TRAIN]
    wins = [clean_windows(imgs[s].clean, imgs[s].labels) for s in TRAIN]
    pred = PatchPredictor(50, feature_dim=samples[0].features.shape[1]).double()
    t0 = time.perf_counter()
    pred.initialize(torch.cat([w[0] for w in wins]), torch.cat([w[1] for w in wins]))
    probe = PredictorTrainer(lr=0.05, iters=2, show_progress=False).fit(pred, samples)
    iters = max(1, int((args.budget_seconds - (time.perf_counter() - t0)) / (probe.stats["seconds"] / 2)))
    PredictorTrainer(lr=0.05, iters=iters, show_progress=False).fit(pred, samples)
    secs = time.perf_counter() - t0

    def predictor_label(v):
        s = make_sample(v.image, v.labels, protos, rho=0.1, T=1.0)
        return predict_tangent(s.problem, pred(s.features)).argmax(-1).reshape(v.labels.shape).numpy()

    record("Sect. 4.4 predictor (1 layer)", predictor_label, sum(q.numel() for q in pred.parameters()), secs,
           iterations=iters + 2)

    # the deep flow, same images and budget: steps sized from a probe
    x = torch.as_tensor(np.stack([imgs[s].image for s in TRAIN + VAL]), dtype=torch.float32)
    y = torch.as_tensor(np.stack([imgs[s].labels for s in TRAIN + VAL]), dtype=torch.long)
    base = dict(crop=min(64, args.size), batch=2, layers=3, lr=0.01, rho=1.0, T=1.0, checkpoint_every=10**9,
                checkpoint_seconds=0, pretrain_steps=200, final_lr_fraction=0.1, class_balance=0.0)
    t0 = time.perf_counter()
    LabelerTrainer(LabelerConfig(**base, iterations=210, eval_every=10**6), show_progress=False).fit(
        x, y, [0, 1, 2, 3], [4])
    per_step = (time.perf_counter() - t0) / 10
    steps = max(10, int(args.budget_seconds / per_step)) - 10
    t0 = time.perf_counter()
    model, res = LabelerTrainer(LabelerConfig(**base, iterations=200 + steps, eval_every=max(1, steps // 8)),
                                show_progress=False).fit(x, y, [0, 1, 2, 3], [4])
    secs = time.perf_counter() - t0
    record("deep linearized flow (3 layers)",
           lambda v: model.predict(torch.as_tensor(v.image, dtype=torch.float32)).numpy(), model.num_parameters(),
           secs, iterations=200 + steps, best=res.best)
    save_json(args.out, {"benchmark": "voronoi_deep", "size": args.size, "budget_seconds": args.budget_seconds,
                         "threads": args.threads, "train_seeds": TRAIN, "validation_seeds": VAL,
                         "test_seeds": TEST, "torch": torch.__version__, "methods": rows})
    deep, single = rows["deep linearized flow (3 layers)"], rows["Sect. 4.4 predictor (1 layer)"]
    print(f"deep {deep['label_error_percent']:.2f} % vs single-layer predictor {single['label_error_percent']:.2f} %"
          f" on unseen images; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
