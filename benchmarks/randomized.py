r"""Time-to-accuracy of the randomized assignment flow and its peers on the held-out model family.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.randomized --out DIR [--seeds 100-109] [--budget-seconds 60] [--threads 2]
    .venv/bin/python -m benchmarks.randomized --out DIR --seeds 0-9        # development seeds
    .venv/bin/python -m benchmarks.randomized --out DIR --quick            # 2 small development models, 5 s

(training throughput and the ``--scaling`` study moved to :mod:`benchmarks.randomized_scaling`.)

For each model of :func:`flowlearn.experiments.model_family.family_model` every method runs for
``--budget-seconds`` of wall time, one after the other, with ``torch.set_num_threads(--threads)``.  At
checkpoints on a geometric time grid (ratio :math:`\sqrt 2`, from budget/1024) the current estimate is
scored against the exact transfer-matrix values (:func:`~flowlearn.experiments.model_family.exact_statistics`):

* marginal error :math:`\frac{1}{nc}\sum_{i,a}|\hat q_i(a) - P^*(x_i = a)|`;
* energy error :math:`|\hat U - \langle P^*, E\rangle| / |\langle P^*, E\rangle|`;
* correlation error :math:`\frac{1}{|E|}\sum_{(i,j)}|\hat P(x_i = x_j) - P^*(x_i = x_j)|`.

The scoring itself is kept off the method's clock.  Methods:

* ``flow`` -- :class:`~flowlearn.randomized.RandomizedAssignmentFlow` with the ``flowlearn ising`` defaults
  (``IsingExperimentConfig(rows, cols, labels, seed)``: dense node interaction, score estimator, batch 256,
  cosine schedule over 3000 iterations), stopped at the budget; estimates from ``--eval-samples`` draws of the
  current flow (marginals: mean of the soft end points, eq. (24); energy and correlation: randomly rounded samples);
* ``mean_field`` -- coordinate ascent (colour classes) from ``--mf-restarts`` random starts, the restart of least
  free energy; time = sweeps; stops when converged;
* ``loopy_bp`` -- :class:`~flowlearn.pgm.LoopyBP` (damping 0.5) with 1, 2, 4, ... iterations, each a fresh run
  timed on its own (time = iterations); stops when converged or when the next run would pass the budget;
* ``gibbs`` -- checkerboard Gibbs, ``--gibbs-chains`` chains, running averages after 100 sweeps of burn-in;
* ``made`` -- :class:`benchmarks.made.MADE` trained by the same reverse KL with a score-function gradient.

Writes ``DIR/time_to_accuracy.json`` (settings, threads, torch version, per model and method the curve, the
final errors, the time to marginal error 0.05 or null, peak memory) and ``DIR/time_to_accuracy.png`` (median
over models against wall time, one panel per metric); prints a summary with the targets of the issue.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import resource
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from benchmarks._memory import environment, measure
from benchmarks.made import MADE, MadeConfig, train_made
from flowlearn.experiments.model_family import (
    REPORT_SEEDS,
    agreement_from_configs,
    exact_statistics,
    family_model,
    statistic_errors,
)
from flowlearn.experiments.table1_config import IsingExperimentConfig
from flowlearn.io import save_json
from flowlearn.pgm import LoopyBP
from flowlearn.pgm.mean_field import expected_local_energies, mean_field_free_energy
from flowlearn.randomized import train_randomized_flow

METHODS = ("flow", "mean_field", "loopy_bp", "gibbs", "made")
TARGET = 0.05
METRICS = ("marginal", "energy", "correlation")
BIASES = ("energy_bias", "agreement_bias")   # signed: negative energy bias = too ordered


class _Stop(Exception):
    """Raised from a training callback when the budget is spent."""


class Clock:
    """Clock of one method with scoring off the clock; records errors at geometric checkpoints.

    ``now`` is ``time.perf_counter`` (wall time) or ``time.process_time`` (CPU time of this process, which with
    one thread is the wall time the method would take on a quiet machine).
    """

    def __init__(self, budget: float, score, now=time.perf_counter):
        self.budget, self.score, self.now = budget, score, now
        self.points = [budget * 2.0 ** (-k / 2) for k in range(20, -1, -1)]
        self.curve: list[dict] = []
        self.paused = 0.0
        self.units = 0
        self.start = now()

    def elapsed(self) -> float:
        return self.now() - self.start - self.paused

    def record(self, seconds: float | None = None, **extra) -> None:
        t0 = self.now()
        seconds = self.elapsed() if seconds is None else seconds
        self.curve.append({"seconds": seconds, "units": self.units, **self.score(), **extra})
        self.paused += self.now() - t0

    def tick(self) -> bool:
        """After one unit of work: score when a checkpoint has passed; False once the budget is spent."""
        self.units += 1
        t = self.elapsed()
        if t >= self.budget or (self.points and t >= self.points[0]):
            self.record(t)
            self.points = [p for p in self.points if p > t]
        return t < self.budget

    def finish(self) -> None:
        if not self.curve or self.curve[-1]["units"] != self.units:
            self.record()


def _sample_scorer(model, exact, draw):
    """Scorer from ``draw() -> (marginals or None, configs)``."""
    def score():
        with torch.no_grad():
            marg, configs = draw()
        if marg is None:
            marg = torch.nn.functional.one_hot(configs, model.num_labels).double().mean(0)
        energy = float(model.energy(configs).double().mean())
        return statistic_errors(exact, marg, energy, agreement_from_configs(model, configs))
    return score


def _factorised_errors(model, exact, q):
    q = q.double()
    agree = (q[model.edges[:, 0]] * q[model.edges[:, 1]]).sum(-1)
    return statistic_errors(exact, q, float(model.mean_field_energy(q)), agree)


def run_flow(model, exact, spec, args) -> Clock:
    config = IsingExperimentConfig(rows=spec.rows, cols=spec.cols, labels=spec.labels, seed=args.seed,
                                   **args.flow_settings)
    flow = None

    def draw():
        gen = torch.Generator().manual_seed(args.seed + 1)
        soft, configs, left = 0.0, [], args.eval_samples
        while left > 0:
            b = min(left, flow.sampling_chunk_size())
            log_s = flow(b, gen)
            soft = soft + log_s.exp().double().sum(0)
            configs.append(flow.round(log_s, "random", gen))
            left -= b
        return soft / args.eval_samples, torch.cat(configs)

    clock = Clock(args.budget_seconds, _sample_scorer(model, exact, draw), args.now)
    flow = config.build_flow(model)

    def callback(it, record):
        if not clock.tick():
            raise _Stop

    try:
        train_randomized_flow(flow, model, config.training_config(), show_progress=False, callback=callback)
    except _Stop:
        pass
    clock.finish()
    return clock


def run_made(model, exact, spec, args, budget: float | None = None) -> Clock:
    """MADE trained for ``budget`` seconds (the flow's time on this model when it ran first, else the budget)."""
    made = None
    gen = torch.Generator().manual_seed(args.seed + 1)
    clock = Clock(budget or args.budget_seconds, _sample_scorer(model, exact, lambda: (None, made.sample(args.eval_samples, gen))), args.now)
    made = MADE(model.num_nodes, model.num_labels, seed=args.seed)
    train_made(made, model, MadeConfig(seed=args.seed), callback=lambda it: clock.tick())
    clock.finish()
    return clock


def run_mean_field(model, exact, spec, args) -> Clock:
    q = None

    def score():
        best = int(torch.argmin(mean_field_free_energy(model, q)))
        return _factorised_errors(model, exact, q[best])

    clock = Clock(args.budget_seconds, score, args.now)
    gen = torch.Generator().manual_seed(args.seed)
    q = torch.softmax(torch.randn(args.mf_restarts, model.num_nodes, model.num_labels, generator=gen,
                                  dtype=torch.float64), -1)
    groups = model.node_coloring()
    while True:
        old = q.clone()
        for nodes in groups:
            q[:, nodes] = torch.softmax(-expected_local_energies(model, q)[:, nodes], -1)
        if not clock.tick() or float((q - old).abs().max()) < 1e-12:
            break
    clock.finish()
    return clock


def run_loopy_bp(model, exact, spec, args) -> Clock:
    clock = Clock(args.budget_seconds, dict)
    k = 1
    while True:
        res = LoopyBP(k, damping=0.5).fit(model)
        agree = res.pairwise_beliefs.diagonal(dim1=1, dim2=2).sum(-1)
        clock.units = k
        clock.curve.append({"seconds": res.seconds, "units": k, "converged": res.converged,
                            **statistic_errors(exact, res.marginals, res.energy, agree)})
        if res.converged or 2 * res.seconds > args.budget_seconds or k >= 10**6:   # next run: ~2x as long
            return clock
        k *= 2


def run_gibbs(model, exact, spec, args) -> Clock:
    rows, cols, c = spec.rows, spec.cols, spec.labels
    chains, burn_in = args.gibbs_chains, 100
    w = float(model.pairwise[0, 0, 1])
    sums = {"counts": torch.zeros(model.num_nodes, c, dtype=torch.float64), "energy": 0.0,
            "agree": torch.zeros(model.num_edges, dtype=torch.float64), "n": 0}
    state = None

    def score():
        if sums["n"] == 0:  # before burn-in: the current chains
            flat = state.reshape(chains, -1)
            return _sample_scorer(model, exact, lambda: (None, flat))()
        n = sums["n"]
        return statistic_errors(exact, sums["counts"] / n, sums["energy"] / n, sums["agree"] / n)

    clock = Clock(args.budget_seconds, score, args.now)
    gen = torch.Generator().manual_seed(args.seed)
    logits0 = -model.unary.T.reshape(1, c, rows, cols).float()
    labels = torch.arange(c)[:, None, None]
    parity = (torch.arange(rows)[:, None] + torch.arange(cols)[None, :]) % 2
    state = torch.randint(c, (chains, rows, cols), generator=gen)
    while True:
        for colour in (0, 1):
            p = torch.nn.functional.pad((state[:, None] == labels).float(), (1, 1, 1, 1))
            same = p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]
            cdf = torch.softmax(logits0 + w * same, 1).cumsum(1)
            u = torch.rand(chains, 1, rows, cols, generator=gen)
            state = torch.where(parity == colour, (u > cdf).sum(1).clamp_max(c - 1), state)
        if clock.units >= burn_in:
            flat = state.reshape(chains, -1)
            sums["counts"] += torch.nn.functional.one_hot(flat, c).double().sum(0)
            sums["energy"] += float(model.energy(flat).sum())
            sums["agree"] += agreement_from_configs(model, flat) * chains
            sums["n"] += chains
        if not clock.tick():
            break
    clock.finish()
    return clock


RUNNERS = {"flow": run_flow, "mean_field": run_mean_field, "loopy_bp": run_loopy_bp, "gibbs": run_gibbs,
           "made": run_made}


def time_to(curve: list[dict], threshold: float = TARGET) -> float | None:
    """First recorded wall time with marginal error at most ``threshold`` (None if never)."""
    return next((r["seconds"] for r in curve if r["marginal"] <= threshold), None)


def value_at(curve: list[dict], t: float, key: str) -> float:
    """Step-function value of ``key`` at wall time ``t`` (last record at or before ``t``; NaN before the first)."""
    before = [r[key] for r in curve if r["seconds"] <= t]
    return before[-1] if before else float("nan")


def run_model(seed: int, args) -> dict:
    spec, model = family_model(seed)
    t0 = time.perf_counter()
    exact = exact_statistics(model)
    out = {"spec": asdict(spec), "name": spec.name, "nodes": model.num_nodes,
           "exact": {"log_z": exact.log_z, "mean_energy": exact.mean_energy, "seconds": time.perf_counter() - t0},
           "methods": {}}
    flow_seconds = None   # the peer trains for as long as the flow did (it may stop before the budget)
    for name in args.methods:
        with measure() as m:
            clock = (run_made(model, exact, spec, args, flow_seconds) if name == "made"
                     else RUNNERS[name](model, exact, spec, args))
        if name == "flow":
            flow_seconds = clock.elapsed()
        final = {k: clock.curve[-1][k] for k in (*METRICS, *BIASES) if k in clock.curve[-1]}
        out["methods"][name] = {"curve": clock.curve, "final": final, "units": clock.units,
                                "time_to_marginal_0.05": time_to(clock.curve), "peak_mb": m["peak_mb"],
                                "wall_seconds_with_scoring": m["seconds"]}
        print(f"  {spec.name:<24}{name:<11} marginal {final['marginal']:.4f}  energy {final['energy']:.4f}  "
              f"corr {final['correlation']:.4f}  units {clock.units}  ({m['seconds']:.1f} s)", flush=True)
    return out


def targets(models: list[dict]) -> dict:
    """The issue's targets, as counts over the models."""
    fin = {m["name"]: {k: v["final"] for k, v in m["methods"].items()} for m in models}
    res: dict = {"models": len(models)}
    if all("flow" in f and "mean_field" in f for f in fin.values()):
        res["flow_below_mean_field"] = sum(f["flow"]["marginal"] < f["mean_field"]["marginal"] for f in fin.values())
    if all("flow" in f and "loopy_bp" in f for f in fin.values()):
        res["flow_at_most_loopy_bp"] = sum(f["flow"]["marginal"] <= f["loopy_bp"]["marginal"] for f in fin.values())
    small = [m for m in models if m["spec"]["rows"] <= 10 and m["spec"]["cols"] <= 14 and "flow" in m["methods"]]
    res["energy_within_2pct_up_to_10x14"] = {"met": sum(m["methods"]["flow"]["final"]["energy"] <= 0.02 for m in small),
                                             "of": len(small)}
    res["time_to_marginal_0.05"] = {m["name"]: {k: v["time_to_marginal_0.05"] for k, v in m["methods"].items()}
                                    for m in models}
    if all("flow" in m["methods"] and "made" in m["methods"] for m in models):
        flow = [f["flow"] for f in fin.values()]
        made = [f["made"] for f in fin.values()]   # both trained for the budget: the final records
        res["flow_vs_made_at_budget"] = {
            key: {"flow_better": sum(a[key] < b[key] for a, b in zip(flow, made)),
                  "flow_median": float(np.median([a[key] for a in flow])),
                  "made_median": float(np.median([b[key] for b in made]))} for key in METRICS}
    return res


def plot(models: list[dict], methods, budget: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.geomspace(budget / 2**10, budget, 60)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, key in zip(axes, METRICS):
        for name in methods:
            vals = np.array([[value_at(m["methods"][name]["curve"], t, key) for t in grid] for m in models])
            ok = np.isfinite(vals).sum(0) * 2 >= len(models)   # at least half of the models have a value
            med = np.full(len(grid), np.nan)
            med[ok] = np.nanmedian(vals[:, ok], 0)
            ax.plot(grid, np.maximum(med, 1e-6), label=name)
        if key == "marginal":
            ax.axhline(TARGET, color="grey", ls=":", label="0.05")
        ax.set(xscale="log", yscale="log", xlabel="wall time [s]", ylabel=f"median {key} error",
               title=f"{key} error (median over {len(models)} models)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_summary(models: list[dict], tg: dict, methods) -> None:
    print("\nfinal marginal error (time to 0.05 in s, '-' if not reached)")
    print(f"{'model':<26}" + "".join(f"{m:>18}" for m in methods))
    for m in models:
        cells = []
        for name in methods:
            r = m["methods"][name]
            t = r["time_to_marginal_0.05"]
            cells.append(f"{r['final']['marginal']:.4f} ({'-' if t is None else f'{t:.2g}'})")
        print(f"{m['name']:<26}" + "".join(f"{c:>18}" for c in cells))
    n = tg["models"]
    print(f"\ntargets over {n} models:")
    if "flow_below_mean_field" in tg:
        print(f"  flow marginal error < mean field: {tg['flow_below_mean_field']}/{n} (target {n}/{n})")
    if "flow_at_most_loopy_bp" in tg:
        print(f"  flow marginal error <= loopy BP: {tg['flow_at_most_loopy_bp']}/{n} (target >= {math.ceil(n / 2)})")
    e = tg["energy_within_2pct_up_to_10x14"]
    print(f"  flow energy within 2 % (models up to 10x14): {e['met']}/{e['of']} (target {e['of']}/{e['of']})")
    for key, v in tg.get("flow_vs_made_at_budget", {}).items():
        print(f"  at the budget, {key} error: flow better than MADE on {v['flow_better']}/{n}; medians flow "
              f"{v['flow_median']:.4f}, MADE {v['made_median']:.4f}")


def _seeds(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def _flow_settings(parser, items: list[str]) -> dict:
    fields = {f.name: type(f.default) for f in dataclasses.fields(IsingExperimentConfig)}
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in fields or name in ("rows", "cols", "labels", "seed"):
            parser.error(f"--flow-set: unknown or fixed field {name!r}; choose from {sorted(fields)}")
        out[name] = (value.lower() in ("1", "true", "yes")) if fields[name] is bool else fields[name](value)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seeds", default=None, help="family seeds, e.g. 100-109 (default) or 0-9 or 3,6")
    p.add_argument("--budget-seconds", type=float, default=None, help="wall time per method and model (60)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for every method")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    p.add_argument("--eval-samples", type=int, default=None, help="samples per checkpoint of flow/MADE (4096)")
    p.add_argument("--mf-restarts", type=int, default=64)
    p.add_argument("--gibbs-chains", type=int, default=256)
    p.add_argument("--seed", type=int, default=0, help="seed of the methods (not of the models)")
    p.add_argument("--cpu-clock", action="store_true",
                   help="budgets and times in CPU seconds of the process (time.process_time) instead of wall "
                        "seconds: with --threads 1, robust to other load on the machine (loopy BP keeps its "
                        "own wall timing)")
    p.add_argument("--quick", action="store_true", help="development seeds 3 and 6, 5 s budgets, 1024 samples")
    p.add_argument("--flow-set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a field of IsingExperimentConfig for the flow (repeatable), e.g. interaction=sparse")
    args = p.parse_args(argv)
    args.flow_settings = _flow_settings(p, args.flow_set)
    args.seeds = _seeds(args.seeds) if args.seeds else ([3, 6] if args.quick else list(REPORT_SEEDS))
    args.budget_seconds = args.budget_seconds or (5.0 if args.quick else 60.0)
    args.eval_samples = args.eval_samples or (1024 if args.quick else 4096)
    args.methods = [m for m in args.methods.split(",") if m]
    args.now = time.process_time if args.cpu_clock else time.perf_counter
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        p.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"threads={torch.get_num_threads()}  torch {torch.__version__}  budget {args.budget_seconds:g} s  "
          f"seeds {args.seeds}  (shared machine: timings are noisy)", flush=True)
    t0 = time.perf_counter()
    models = []
    for s in args.seeds:
        models.append(run_model(s, args))
        save_json(out / "partial.json", {"seeds_done": args.seeds[:len(models)], "models": models})
    tg = targets(models)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "now")}
    save_json(out / "time_to_accuracy.json", {
        "settings": settings, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "environment": environment(), "marginal_threshold": TARGET, "metrics": {
            "marginal": "mean over nodes and labels of |q_i(a) - P*(x_i = a)|",
            "energy": "|U - <P*, E>| / |<P*, E>|", "correlation": "mean over edges of |P(x_i = x_j) - P*(x_i = x_j)|"},
        "models": models, "targets": tg, "total_seconds": time.perf_counter() - t0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    plot(models, args.methods, args.budget_seconds, out / "time_to_accuracy.png")
    print_summary(models, tg, args.methods)
    print(f"-> {out / 'time_to_accuracy.json'}, {out / 'time_to_accuracy.png'} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
