r"""Diagnostics of the gradient approximation (paper 000, Figs. 3 and 4), each as a JSON-able dict:
:func:`compare_gradients` (Fig. 3), :func:`rank_study` (Fig. 4b), :func:`krylov_dimension_study` and
:func:`integration_time_study` (Figs. 4a, 4c); :func:`save_study` writes ``<name>.json`` plus ``<name>.png``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from ..geometry import egrad2rgrad
from ..io import save_json
from ..linearized import LowRank
from .losses import LearningProblem, LossEvaluation
from .plots import plot_gradient_maps, plot_series
from .training import WeightLearner

__all__ = ["compare_gradients", "cosine_report", "integration_time_study", "krylov_dimension_study",
           "rank_study", "save_study"]


def cosine_report(patches: torch.Tensor, grad_a: torch.Tensor, grad_b: torch.Tensor, shape,
                  *, min_relative_norm: float = 1e-3) -> dict:
    """Per-pixel cosine of the Riemannian gradients ``a`` and ``b`` (``cosine_map``, ``norm_map`` of ``b``, numpy
    ``shape``), the fractions of pixels at 0.9 / 0.99 among those whose norm of ``b`` (the reference) is at least
    ``min_relative_norm`` times the largest and over all, ``overall_cosine`` and ``relative_error``."""
    ra, rb = egrad2rgrad(patches, grad_a), egrad2rgrad(patches, grad_b)
    na, nb = torch.linalg.vector_norm(ra, dim=1), torch.linalg.vector_norm(rb, dim=1)
    cos = (ra * rb).sum(1) / (na * nb).clamp_min(torch.finfo(ra.dtype).tiny)
    active = nb >= min_relative_norm * nb.max()
    flat = lambda x: float(x.double().mean()) if x.numel() else float("nan")  # noqa: E731
    return {
        "cosine_map": cos.reshape(shape).cpu().numpy(),
        "norm_map": nb.reshape(shape).cpu().numpy(),
        "active_pixels": int(active.sum()),
        "num_pixels": int(cos.numel()),
        "min_relative_norm": min_relative_norm,
        "fraction_ge_0.9": flat(cos[active] >= 0.9),
        "fraction_ge_0.99": flat(cos[active] >= 0.99),
        "fraction_ge_0.9_all_pixels": flat(cos >= 0.9),
        "fraction_ge_0.99_all_pixels": flat(cos >= 0.99),
        "overall_cosine": _overall_cosine(ra, rb),
        "relative_error": float(torch.linalg.vector_norm(ra - rb) / torch.linalg.vector_norm(rb)),
    }


def compare_gradients(problem: LearningProblem, patches, method, reference, *, min_relative_norm: float = 1e-3
                      ) -> tuple[dict, LossEvaluation, LossEvaluation]:
    """Evaluate both methods (:mod:`flowlearn.linearized.methods`) at ``patches``; returns
    ``(cosine_report, evaluation, reference_evaluation)``."""
    p = problem.check_patches(patches)
    a, b = problem.evaluate(p, method), problem.evaluate(p, reference)
    w = problem.weights
    shape = (w.height, w.width) if hasattr(w, "height") else (w.num_nodes,)
    rep = cosine_report(p, a.grad, b.grad, shape, min_relative_norm=min_relative_norm)
    rep.update(method=a.method.name, reference=b.method.name, seconds=a.stats["seconds"],
               reference_seconds=b.stats["seconds"], loss=a.loss, reference_loss=b.loss)
    return rep, a, b


def _overall_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b)))


def rank_study(problem: LearningProblem, patches, reference: LossEvaluation, *, m: int = 10) -> dict:
    """Singular values of :math:`X` and the overall cosine to ``reference`` for ranks ``1..m``."""
    p = problem.check_patches(patches)
    full = problem.evaluate(p, LowRank(m=m, rank=m))
    sv = full.stats.get("singular_values", [])
    ranks = list(range(1, len(sv) + 1))
    cos = [_overall_cosine(problem.evaluate(p, LowRank(m=m, rank=r)).grad, reference.grad) for r in ranks]
    return {"m": m, "singular_values": sv, "ranks": ranks, "cosine_to_reference": cos}


def _short_training(problem, m, iters, lr, optimizer):
    learner = WeightLearner(LowRank(m=m), optimizer=optimizer, lr=lr, iters=iters, show_progress=False)
    res = learner.fit(problem)
    return [h["label_error"] for h in res.history] + [res.final["label_error"]]


def krylov_dimension_study(problem: LearningProblem, patches, reference: LossEvaluation, ms=(2, 4, 6, 8, 10, 15),
                           *, iters: int = 10, lr: float = 0.05, optimizer: str = "adam") -> dict:
    """Cosine to ``reference`` and a short training curve (label error %) per Krylov dimension (Fig. 4a)."""
    p = problem.check_patches(patches)
    out = {"m": list(ms), "cosine_to_reference": [], "label_error_curves": []}
    for m in ms:
        out["cosine_to_reference"].append(_overall_cosine(problem.evaluate(p, LowRank(m=m)).grad, reference.grad))
        if iters > 0:
            out["label_error_curves"].append(_short_training(problem, m, iters, lr, optimizer))
    return out


def integration_time_study(problem: LearningProblem, Ts=(1.0, 2.0, 5.0, 10.0, 20.0), *, iters: int = 10,
                           lr: float = 0.05, optimizer: str = "adam", m: int = 10) -> dict:
    """Training curves (label error %) of ``lowrank`` learning for several integration times (Fig. 4c)."""
    curves = [_short_training(dataclasses.replace(problem, T=float(T)), m, iters, lr, optimizer) for T in Ts]
    return {"T": [float(T) for T in Ts], "label_error_curves": curves}


def save_study(out, name: str, study: dict) -> None:
    """Write ``<name>.json`` and a matching ``<name>.png`` for a study returned by this module."""
    out = Path(out)
    data = {k: v for k, v in study.items() if k not in ("cosine_map", "norm_map")}
    save_json(out / f"{name}.json", data)
    if "cosine_map" in study:
        plot_gradient_maps(out / f"{name}.png", np.asarray(study["cosine_map"]), np.asarray(study["norm_map"]),
                           names=(study.get("method", "a"), study.get("reference", "b")))
    elif "singular_values" in study:
        sv = np.maximum(np.asarray(study["singular_values"], dtype=float), 1e-300)
        plot_series(out / f"{name}.png", {"sigma_r / sigma_1": (study["ranks"], sv / sv[0]),
                                          "cosine to reference": (study["ranks"], study["cosine_to_reference"])},
                    xlabel="rank r", ylabel="value", logy=True, title=f"singular values of X (m={study['m']})")
    else:
        key = "m" if "m" in study else "T"
        series = {f"{key}={v}": (list(range(len(c))), c) for v, c in zip(study[key], study["label_error_curves"])}
        if not series and "cosine_to_reference" in study:
            series = {"cosine": (study[key], study["cosine_to_reference"])}
        plot_series(out / f"{name}.png", series, xlabel="iteration" if study.get("label_error_curves") else key,
                    ylabel="label error (%)" if study.get("label_error_curves") else "cosine",
                    title=f"{key} study")
