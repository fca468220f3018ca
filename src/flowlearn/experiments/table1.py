r"""The Table 1 comparison of paper 001 on any grid model (Ising or Potts), plus our baselines.

:func:`run_ising_experiment` builds the model of :class:`IsingExperimentConfig`, computes the
reference -- exact by :func:`~flowlearn.pgm.exact_inference_auto` (column transfer
matrix, else enumeration) when feasible, otherwise a long Gibbs run, labelled ``gibbs_reference``
with its estimated error -- trains a :class:`RandomizedAssignmentFlow`, and evaluates it from
``eval_samples`` soft end points rounded both ways: ``randomized_af`` with ``config.rounding``
(default ``"random"``, the finite-time mixture :math:`P(T)` that training fits) and
``randomized_af_argmax`` (or ``randomized_af_random``) with the other rounding.  Then the
mean-field (best of many restarts), Gibbs-sampler and loopy-BP rows.  Columns: ``kl``,
``energy``, ``entropy``, ``marginal_difference``, ``seconds``.

With a Gibbs reference there is no :math:`\log Z^*`: every ``kl`` is ``None`` and the rows carry
``free_energy`` :math:`= \overline{E} - \hat H` instead (KL up to the unknown constant
:math:`\log Z^*`; plug-in entropies of large supports are biased low).

The ``loopy_bp`` row reports Bethe quantities: ``energy`` = :math:`U_B`, ``entropy`` = :math:`H_B`
and ``kl`` = :math:`F_B + \log Z^*` -- the error of the Bethe free energy, not a true KL
divergence (loopy BP defines no joint distribution; it can be negative).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..pgm.bp import LoopyBP
from ..pgm.enumeration import ExactResult
from ..pgm.gibbs import GibbsSampler, grid_potts_gibbs
from ..pgm.mean_field import MeanField
from ..pgm.models import PairwiseModel
from ..pgm.transfer import exact_inference_auto
from ..randomized.inference import (Evaluation, SampleAccumulator, evaluate_factorized, evaluate_flow_roundings,
                                   evaluate_samples, marginal_difference)
from ..randomized.plots import save_marginals_png, save_samples_png, save_training_curve
from ..randomized.sflow import RandomizedAssignmentFlow
from ..randomized.training import TrainingResult, train_randomized_flow
from .table1_config import PAPER_TABLE1, IsingExperimentConfig

__all__ = ["PAPER_TABLE1", "IsingExperimentConfig", "IsingExperimentResult", "gibbs_reference",
           "run_ising_experiment", "save_table1_figures"]
#: integer samples of the flow, mean field and Gibbs kept for the pictures
_PICTURES = 16


@dataclass
class IsingExperimentResult:
    """Everything :func:`run_ising_experiment` computed: ``table`` maps the row names (``reference_name``, that is
    ``exact`` or ``gibbs_reference``, ``randomized_af``, ``randomized_af_argmax`` / ``_random``, ``mean_field``,
    ``gibbs``, ``loopy_bp``) to the columns, ``marginals`` to (n, c) tensors; ``samples`` holds a few integer
    samples of ``randomized_af``, ``mean_field`` and ``gibbs`` for pictures."""

    config: IsingExperimentConfig
    model: PairwiseModel
    exact: ExactResult
    table: dict
    marginals: dict
    samples: dict
    training: TrainingResult
    flow: RandomizedAssignmentFlow
    extra: dict = field(default_factory=dict)
    reference_name: str = "exact"

    def to_json(self) -> dict:
        """JSON-serialisable summary: ``config``, ``table``, the published ``paper`` table and ``details``."""
        return {"config": asdict(self.config), "table": self.table, "paper": PAPER_TABLE1, "details": self.extra}


def _finite(x):
    return None if x is None or not math.isfinite(x) else x


def _row(values: dict, exact_reference: bool, free_energy: float) -> dict:
    """A table row; without an exact reference ``kl`` is None and ``free_energy`` is given instead."""
    return values if exact_reference else {**values, "kl": None, "free_energy": free_energy}


def gibbs_reference(model: PairwiseModel, config: IsingExperimentConfig) -> tuple[ExactResult, dict]:
    """A long Gibbs run as reference: ``ExactResult`` with ``log_z = nan``, the streamed marginals and mean energy
    of all retained samples, and their between-chain standard errors.  The plug-in entropy (and the support) is
    computed only when the samples fit the keep bound of :mod:`flowlearn.pgm.gibbs`; otherwise it is NaN."""
    run = grid_potts_gibbs(model, config.reference_samples, num_chains=config.reference_chains,
                           burn_in=config.reference_burn_in, seed=config.seed + 3)
    details = {"method": "gibbs", "samples": run.num_samples, "chains": run.num_chains, "sweeps": run.sweeps,
               "burn_in": config.reference_burn_in, "seconds": run.seconds}
    entropy, seconds = float("nan"), run.seconds
    if run.kept is not None:
        ev = evaluate_samples(model, run.configs, ExactResult(float("nan"), torch.full(
            (model.num_nodes, model.num_labels), 1.0 / model.num_labels, dtype=model.dtype), 0.0, 0.0, 0, 0.0))
        entropy, seconds = ev.entropy, seconds + ev.seconds
        details["support"] = ev.support
    if run.num_chains >= 2:
        se = run.marginal_standard_error
        details.update({"marginal_standard_error_mean": float(se.mean()),
                        "marginal_standard_error_max": float(se.max()),
                        "energy_standard_error": run.energy_standard_error})
    details["note"] = ("no exact reference feasible: kl columns are null, marginal_difference is measured "
                       "against this Gibbs run (its own error above), entropy is the plug-in estimate (biased low "
                       "for large supports; NaN when the samples were too many to keep)")
    ref = ExactResult(log_z=float("nan"), marginals=run.marginals.to(model.dtype), entropy=entropy,
                      expected_energy=run.mean_energy, num_configurations=0, seconds=seconds)
    return ref, details


def run_ising_experiment(config: IsingExperimentConfig | None = None, *, checkpoint_path=None,
                         resume: bool = False, overwrite: bool = False,
                         show_progress: bool | None = None) -> IsingExperimentResult:
    """Run the Table 1 comparison (see module docstring); returns the table and the trained flow.
    ``checkpoint_path``, ``resume`` and ``overwrite`` go to :func:`~flowlearn.randomized.train_randomized_flow`."""
    config = config or IsingExperimentConfig()
    model = config.build_model()
    table, marginals, samples, extra = {}, {}, {}, {}

    method = config.exact_method()
    if method is not None:
        exact, extra["reference"], ref_name = exact_inference_auto(model, method=method), {"method": method}, "exact"
        log_z = exact.log_z
    else:
        (exact, extra["reference"]), ref_name, log_z = gibbs_reference(model, config), "gibbs_reference", None
    is_exact = log_z is not None

    def row(ev: Evaluation, seconds: float) -> dict:
        return _row({**ev.row(), "seconds": seconds}, is_exact, ev.energy - ev.entropy)

    table[ref_name] = _row({"kl": 0.0, "energy": exact.expected_energy, "entropy": exact.entropy,
                            "marginal_difference": 0.0, "seconds": exact.seconds}, is_exact,
                           exact.expected_energy - exact.entropy)
    marginals[ref_name] = exact.marginals
    extra["log_z"] = log_z

    t0 = time.perf_counter()
    flow = config.build_flow(model)
    training = train_randomized_flow(flow, model, config.training_config(), log_z=log_z,
                                     checkpoint_path=checkpoint_path, resume=resume, overwrite=overwrite,
                                     show_progress=show_progress)
    train_seconds = time.perf_counter() - t0
    gen = torch.Generator(device=flow.device).manual_seed(config.seed + 1)
    other = "argmax" if config.rounding == "random" else "random"
    evs, stats = evaluate_flow_roundings(flow, model, exact, roundings=(config.rounding, other),
                                         num_samples=config.eval_samples, generator=gen,
                                         integral_tolerance=config.integral_tolerance)
    for name, r in (("randomized_af", config.rounding), (f"randomized_af_{other}", other)):
        table[name] = row(evs[r], train_seconds + evs[r].seconds)
        marginals[name] = evs[r].marginals
    samples["randomized_af"] = flow.sample(_PICTURES, gen, rounding=config.rounding)
    extra["randomized_af"] = {"train_seconds": train_seconds, "eval_seconds": evs[config.rounding].seconds,
                              "support": evs[config.rounding].support, f"support_{other}": evs[other].support,
                              "num_samples": evs[config.rounding].num_samples, "rounding": config.rounding,
                              "entropy_saturated": evs[config.rounding].entropy_saturated,
                              **stats, "interaction": config.resolved_interaction, "lr": config.resolved_lr,
                              "drive_scale": config.drive_scale, "iterations": training.stats["iterations"],
                              "resumed_from": training.stats["resumed_from"],
                              "iterations_per_second": training.iterations_per_second,
                              "final_objective": training.history[-1]["objective"] if training.history else None}

    fits = [MeanField(config.mean_field_restarts, method=method_, iterations=iters, seed=config.seed).fit(
        model, log_z=log_z) for method_, iters in (("adam", config.mean_field_iterations),
                                                   ("coordinate", config.mean_field_sweeps))]
    mf = min(fits, key=lambda r: r.free_energy)  # best of all restarts of both methods
    ev = evaluate_factorized(model, mf.marginals, exact)
    table["mean_field"] = row(ev, sum(f.seconds for f in fits))
    marginals["mean_field"] = mf.marginals
    g = torch.Generator(device=model.device).manual_seed(config.seed + 2)
    probs = mf.marginals.expand(_PICTURES, -1, -1).reshape(-1, model.num_labels)
    samples["mean_field"] = torch.multinomial(probs, 1, generator=g).reshape(_PICTURES, model.num_nodes)
    extra["mean_field"] = {"restarts_per_method": config.mean_field_restarts, "best_method": mf.method,
                           "best_restart": mf.best_restart,
                           "kl_by_method": {f.method: _finite(f.kl) if is_exact else None for f in fits},
                           "free_energy": float(mf.free_energy)}

    acc = SampleAccumulator(model)   # streamed: the samples are never stacked, whatever their number
    gibbs = GibbsSampler(config.gibbs_chains, burn_in=config.gibbs_burn_in, seed=config.seed).sample(
        model, config.gibbs_samples, keep_samples=False, on_sample=acc.add)
    ev = acc.evaluate(exact)
    table["gibbs"] = row(ev, gibbs.seconds)
    marginals["gibbs"] = ev.marginals
    samples["gibbs"] = gibbs.final[:: max(1, gibbs.final.shape[0] // _PICTURES)][:_PICTURES]
    extra["gibbs"] = {"support": ev.support, "num_samples": ev.num_samples, "chains": gibbs.num_chains,
                      "sweeps": gibbs.sweeps, "entropy_saturated": ev.entropy_saturated}

    bp = LoopyBP(damping=config.bp_damping).fit(model)
    table["loopy_bp"] = _row({"kl": bp.bethe_free_energy + (log_z or 0.0), "energy": bp.energy, "entropy": bp.entropy,
                              "marginal_difference": marginal_difference(bp.marginals, exact.marginals),
                              "seconds": bp.seconds}, is_exact, bp.bethe_free_energy)
    marginals["loopy_bp"] = bp.marginals
    extra["loopy_bp"] = {"converged": bp.converged, "iterations": bp.iterations,
                         "note": "kl column = Bethe free energy + log Z* (not a KL divergence)"}
    return IsingExperimentResult(config=config, model=model, exact=exact, table=table, marginals=marginals,
                                 samples=samples, training=training, flow=flow, extra=extra, reference_name=ref_name)


def save_table1_figures(out, result: IsingExperimentResult, config: IsingExperimentConfig) -> None:
    """The pictures of a Table 1 run in ``out``: ``samples.png`` (mean field, randomized AF, Gibbs; Fig. 2),
    ``marginals.png`` (reference, randomized AF, mean field; Fig. 3) and ``training_curve.png`` (with mean
    field's value and, for the paper's model, the paper's AF result as reference lines)."""
    out = Path(out)
    grid, ref = result.model.grid_shape, result.reference_name
    save_samples_png(out / "samples.png", {k: result.samples[k] for k in ("mean_field", "randomized_af", "gibbs")},
                     grid, num_labels=config.labels)
    save_marginals_png(out / "marginals.png", {k: result.marginals[k] for k in (ref, "randomized_af", "mean_field")},
                       grid)
    mf = result.table["mean_field"]
    reference = {"objective": {"mean field": mf["kl"] if mf["kl"] is not None else mf["free_energy"]}}
    paper_model = (3, 8, 2, 3.0, 0.0, 2.1)
    if (config.rows, config.cols, config.labels, config.field, config.field_noise, config.coupling) == paper_model:
        reference["objective"]["paper AF"] = PAPER_TABLE1["randomized_af"]["kl"]
    save_training_curve(out / "training_curve.png", result.training.history, reference=reference)
