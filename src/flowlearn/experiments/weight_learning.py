"""Paper 000's experiments: learning the weights of the linearized assignment flow.

:func:`learn_weights` (Fig. 2, ``flowlearn learn``), :func:`gradient_check` (Figs. 3 and 4, ``flowlearn
gradcheck``) and the Sect. 4.4 weight predictor (Fig. 5, ``flowlearn predict``: :func:`predictor_setup`, then
:func:`fit_predictor`); part ``learning`` of :mod:`flowlearn.experiments.reproduce` runs them on Voronoi images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data import colorize_labels, nearest_prototype_labels
from ..data.images import to_display
from ..engine import spec
from ..engine.distributed import world
from ..evaluation import label_error
from ..io import save_json, save_npy, save_png, save_weights
from ..learning.diagnostics import (compare_gradients, integration_time_study, krylov_dimension_study, rank_study,
                                    save_study)
from ..learning.plots import patch_mosaic, plot_curves
from ..learning.predictor import PatchPredictor, clean_windows, make_sample, predict_tangent

__all__ = ["fit_predictor", "gradient_check", "learn_weights", "predictor_setup"]


def _labeling(problem, patches, method, shape) -> np.ndarray:
    return colorize_labels(problem.evaluate(patches, method).tangent.argmax(-1).reshape(shape).cpu().numpy())


def learn_weights(out, problem, image, labels, prototypes, learners: dict, *, resume: bool = True,
                  log=print) -> dict:
    """Fit every :class:`~flowlearn.learning.WeightLearner` of ``learners`` (name -> learner) from uniform patches
    and write ``history_<name>.json``, ``patches_<name>.npy``, ``labeling_<name>.png``, ``weights_<name>.png``,
    ``labeling_uniform.png``, ``curves.png``, ``image.png``, ``labels.png`` and ``checkpoint_<name>.pt``
    (continued with ``resume``, else replaced) to ``out``.  Returns ``{"rounding_label_error", "uniform",
    "learned": {name: {"final", "seconds", "method"}}}``, empty on ranks other than 0 (they write nothing).
    """
    out = Path(out)
    runs = {name: dict(checkpoint=out / f"checkpoint_{name}.pt", resume=resume, overwrite=not resume)
            for name in learners}
    if world()[1] != 0:
        for name, learner in learners.items():
            learner.fit(problem, **runs[name])
        return {}
    H, W = labels.shape
    first = next(iter(learners.values()))
    uniform = first.evaluate(problem, problem.weights.patches)
    rounding = label_error(nearest_prototype_labels(image, prototypes), labels)
    save_png(out / "image.png", to_display(image))
    save_png(out / "labels.png", colorize_labels(labels))
    histories, learned = {}, {}
    for name, learner in learners.items():
        res = learner.fit(problem, **runs[name])
        histories[name] = res.history
        save_json(out / f"history_{name}.json", res.history)
        save_npy(out / f"patches_{name}.npy", res.patches)
        save_png(out / f"labeling_{name}.png", _labeling(problem, res.patches, learner.method, (H, W)))
        save_png(out / f"weights_{name}.png", patch_mosaic(res.patches, H, W, problem.weights.size))
        learned[name] = {"final": res.final, "seconds": res.stats["seconds"], "method": spec(learner.method)}
        log(f"learn {name}: loss {uniform['loss']:.4f} -> {res.final['loss']:.4f}, label error "
            f"{uniform['label_error']:.2f} % -> {res.final['label_error']:.2f} % in {res.stats['seconds']:.1f} s")
    save_png(out / "labeling_uniform.png", _labeling(problem, problem.weights.patches, first.method, (H, W)))
    plot_curves(out / "curves.png", histories, title=f"{H}x{W}, J={problem.num_labels}")
    return {"rounding_label_error": rounding, "uniform": uniform, "learned": learned}


def gradient_check(out, problem, method, reference, *, min_norm: float = 1e-3, m: int = 10, studies: bool = False,
                   study_iters: int = 10, args: dict | None = None) -> dict:
    """Per-pixel cosine of ``method``'s gradient against ``reference``'s at uniform patches (Fig. 3): writes
    ``gradcheck.json/.png`` (with ``args`` when given) and ``rank_study.json/.png`` (Fig. 4b), with ``studies``
    also ``krylov_study`` and ``time_study`` (Figs. 4a, 4c; ``study_iters`` training steps per curve).
    Returns the cosine report (:func:`~flowlearn.learning.diagnostics.compare_gradients`)."""
    patches = problem.weights.patches
    report, _, ref = compare_gradients(problem, patches, method, reference, min_relative_norm=min_norm)
    if args is not None:
        report["args"] = args
    save_study(out, "gradcheck", report)
    save_study(out, "rank_study", rank_study(problem, patches, ref, m=m))
    if studies:
        save_study(out, "krylov_study", krylov_dimension_study(problem, patches, ref, iters=study_iters))
        save_study(out, "time_study", integration_time_study(problem, iters=study_iters))
    return report


def predictor_setup(train, test, *, num_prototypes: int = 50, sigma: float = 1.0, rho: float = 0.1, T: float = 5.0,
                    seed: int = 0):
    """``(predictor, train_samples, test_samples)`` for ``train`` and ``test``, lists of ``(image, labels, clean,
    prototypes)``: the :class:`~flowlearn.learning.predictor.PatchPredictor` is initialised by k-means on the
    clean training windows (``seed``)."""
    tr = [make_sample(img, lab, pr, rho=rho, T=T) for img, lab, _, pr in train]
    te = [make_sample(img, lab, pr, rho=rho, T=T) for img, lab, _, pr in test]
    wins = [clean_windows(clean, lab) for _, lab, clean, _ in train]
    pred = PatchPredictor(num_prototypes, feature_dim=tr[0].features.shape[1], sigma=sigma)
    pred.initialize(torch.cat([w[0] for w in wins]), torch.cat([w[1] for w in wins]), seed=seed)
    return pred, tr, te


def fit_predictor(out, trainer, predictor, train_samples, test_samples, test, *, resume: bool = True,
                  extra: dict | None = None, log=print):
    """Train ``predictor`` with ``trainer`` (:class:`~flowlearn.learning.predictor.PredictorTrainer`) and label
    the ``test`` images (as for :func:`predictor_setup`) with uniform and predicted weights; writes
    ``predictor.pt`` (weights, sizes and ``extra``), ``history.json``, ``curves.png``,
    ``labeling_{uniform,predicted}_<k>.png``, ``weights_predicted_<k>.png`` and ``checkpoint.pt`` to ``out``.
    Returns ``(result, rows)``, a row per test image with the label error (%) of pixel-wise rounding, uniform and
    predicted weights (no rows on ranks other than 0)."""
    out = Path(out)
    res = trainer.fit(predictor, train_samples, test_samples, checkpoint=out / "checkpoint.pt", resume=resume,
                      overwrite=not resume)
    if world()[1] != 0:
        return res, []
    save_weights(out / "predictor.pt", {"state": predictor.state_dict(), "num_prototypes": predictor.num_prototypes,
                                        "feature_dim": predictor.feature_dim, **(extra or {})})
    save_json(out / "history.json", res.history)
    hist = [dict(h, label_error=h["validation_error"]) for h in res.history if h["validation_error"] is not None]
    plot_curves(out / "curves.png", {"train": res.history, "test": hist}, title="parameter predictor")
    rows = []
    for k, ((img, lab, _, pr), s) in enumerate(zip(test, test_samples)):
        H, W = lab.shape
        uni = predict_tangent(s.problem, s.problem.weights.patches).argmax(-1).reshape(H, W).numpy()
        with torch.no_grad():
            patches = predictor(s.features)
        prd = predict_tangent(s.problem, patches).argmax(-1).reshape(H, W).numpy()
        rows.append({"test_image": k, "rounding": label_error(nearest_prototype_labels(img, pr), lab),
                     "uniform": label_error(uni, lab), "predicted": label_error(prd, lab)})
        save_png(out / f"labeling_uniform_{k}.png", colorize_labels(uni))
        save_png(out / f"labeling_predicted_{k}.png", colorize_labels(prd))
        save_png(out / f"weights_predicted_{k}.png", patch_mosaic(patches, H, W, 3))
        log(f"test image {k}: rounding {rows[-1]['rounding']:.2f} %, uniform {rows[-1]['uniform']:.2f} %, "
            f"predicted {rows[-1]['predicted']:.2f} %")
    return res, rows
