"""The three papers' experiments in one report, our numbers beside the published ones (``flowlearn reproduce``).

Parts, each ``part(out_dir, config) -> PartResult`` calling the library directly:

* ``learning`` -- paper 000: training curves of three gradient methods (Fig. 2), the per-pixel cosine
  of the low-rank gradient against autodiff (Fig. 3, with ``studies`` Figs. 4a/4c) and the Sect. 4.4
  weight predictor on unseen images (Fig. 5);
* ``randomized`` -- paper 001, the Ising Table 1 (:func:`~flowlearn.experiments.table1.run_ising_experiment`);
* ``encoding`` -- paper 002, the data-efficiency Table 1 on the bundled digits
  (:func:`flowlearn.experiments.gfe_data_efficiency.compare`).

:func:`run_reproduce` writes ``report.md``, ``report.html`` and ``reproduce.json``; a finished part is
stored as ``<part>.part.json`` and reused while its settings are unchanged, and the trainings resume
from their checkpoints, so an interrupted :data:`FULL` run continues where it stopped.
"""

from __future__ import annotations

import contextlib
import functools
import html
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy
import scipy
import torch

from .. import __version__
from ..data import make_voronoi
from ..encoding import TrainConfig, load_dataset
from ..encoding.flows import reconstruction_loss
from ..io import atomic_write, check_out_dir, ensure_out_dir, save_json
from ..learning import LearningProblem, WeightLearner
from ..learning.predictor import PredictorTrainer
from ..linearized.methods import method_from_name
from .gfe_data_efficiency import PAPER_TABLE1 as GFE_PAPER
from .gfe_data_efficiency import compare
from .table1 import PAPER_TABLE1 as ISING_PAPER
from .table1 import IsingExperimentConfig, run_ising_experiment, save_table1_figures
from .weight_learning import fit_predictor, gradient_check, learn_weights, predictor_setup

__all__ = ["FULL", "PARTS", "QUICK", "PartResult", "ReproduceConfig", "Table", "environment", "run_reproduce",
           "write_report"]


def _fmt(x) -> str:
    if isinstance(x, float):
        if x != x:
            return "–"
        if x == 0 or 1e-3 <= abs(x) < 1e5:
            return f"{x:.4g}" if abs(x) < 100 else f"{x:.1f}"
        return f"{x:.2e}"
    return "–" if x is None else str(x)


@dataclass
class Table:
    """A table of the report with a caption; cells are formatted with 4 significant digits."""

    headers: Sequence[str]
    rows: Sequence[Sequence]
    caption: str = ""

    def markdown(self) -> str:
        """The table as Markdown (caption in italics above it)."""
        out = [f"*{self.caption}*", ""] if self.caption else []
        out.append("| " + " | ".join(self.headers) + " |")
        out.append("|" + "---|" * len(self.headers))
        out += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in self.rows]
        return "\n".join(out) + "\n"

    def html(self) -> str:
        """The table as an HTML ``<table>`` element with escaped cells."""
        cap = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>"
                       for row in self.rows)
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n"


_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
          "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;"
          "text-align:right}th{background:#eee}caption{font-style:italic;text-align:left}"
          "img{max-width:100%}figure{margin:1em 0}pre{background:#f6f6f6;padding:.5em}")


def write_report(out_dir, title: str, blocks) -> tuple[Path, Path]:
    """Write ``report.md`` and a self-contained ``report.html`` atomically into the existing ``out_dir`` from
    ``blocks``, pairs ``("heading", text)``, ``("text", paragraph)``, ``("table", Table)`` or ``("figure", (path,
    caption))`` (the image linked relative to ``out_dir``); returns their paths."""
    out_dir, t = Path(out_dir), html.escape(title)
    md = [f"# {title}\n"]
    hl = ["<!DOCTYPE html><html><head><meta charset='utf-8'>", f"<title>{t}</title>", f"<style>{_STYLE}</style>",
          f"</head><body><h1>{t}</h1>"]
    for kind, value in blocks:
        if kind == "heading":
            md.append(f"## {value}\n")
            hl.append(f"<h2>{html.escape(value)}</h2>")
        elif kind == "text":
            md.append(value + "\n")
            hl.append("<p>" + html.escape(value).replace("\n", "<br>") + "</p>")
        elif kind == "table":
            md.append(value.markdown())
            hl.append(value.html())
        else:
            rel, caption = os.path.relpath(value[0], out_dir), value[1]
            md.append(f"![{caption}]({rel})\n\n*{caption}*\n")
            hl.append(f"<figure><img src='{html.escape(rel)}'><figcaption>{html.escape(caption)}</figcaption></figure>")
    hl.append("</body></html>")
    paths = out_dir / "report.md", out_dir / "report.html"
    for path, lines in zip(paths, (md, hl)):
        with atomic_write(path, "w") as fh:
            fh.write("\n".join(lines))
    return paths


@dataclass(frozen=True)
class ReproduceConfig:
    """Sizes of every part (:data:`QUICK`: minutes on 2 CPU cores; :data:`FULL`: the published settings)."""
    name: str = "quick"
    learn_size: int = 64           # Fig. 2: Voronoi colors image side, training iterations
    learn_iters: int = 20
    gradcheck_size: int = 64       # Fig. 3: Voronoi boundary image side; studies: also Figs. 4a, 4c
    studies: bool = False
    predict_size: int = 64         # Fig. 5: Voronoi boundary image side, predictor training iterations
    predict_iters: int = 20
    ising: IsingExperimentConfig = field(         # Table 1 of paper 001
        default_factory=lambda: IsingExperimentConfig(eval_samples=200000, gibbs_samples=200000))
    gfe_sizes: tuple = (25, 100)   # paper 002: training-set sizes, seeds, images seen per run
    gfe_seeds: int = 3
    gfe_images: int = 3000

    def part_settings(self, part: str) -> dict:
        """The settings a part depends on (a stored part is reused only when they are unchanged)."""
        d = asdict(self)
        keys = {"learning": ("learn_size", "learn_iters", "gradcheck_size", "studies", "predict_size",
                             "predict_iters"), "randomized": ("ising",),
                "encoding": ("gfe_sizes", "gfe_seeds", "gfe_images")}[part]
        return json.loads(json.dumps({k: d[k] for k in keys}))


#: Reduced sizes, minutes on 2 CPU cores (the default, ``flowlearn reproduce --quick``).
QUICK = ReproduceConfig()
#: The papers' settings (long; resumable), ``flowlearn reproduce --full``.
FULL = ReproduceConfig(name="full", learn_size=128, learn_iters=40, studies=True, predict_size=128, predict_iters=60,
                       ising=IsingExperimentConfig(), gfe_sizes=(25, 100, 400, 1437), gfe_images=10000)


@dataclass
class PartResult:
    """What a part contributes to the report (figures are paths relative to the part's directory)."""
    title: str
    tables: list = field(default_factory=list)
    figures: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    seconds: float = 0.0

    @classmethod
    def from_json(cls, d: dict) -> "PartResult":
        """The inverse of :func:`dataclasses.asdict` (tables back as :class:`Table`, figures as tuples)."""
        d = dict(d)
        d["tables"] = [Table(**t) for t in d["tables"]]
        d["figures"] = [tuple(f) for f in d["figures"]]
        return cls(**d)


@contextlib.contextmanager
def _threads(n: int):
    """``torch`` on ``n`` threads inside the block (the published tables ran on one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _voronoi(scenario: str, size: int):
    v = make_voronoi(size, scenario=scenario, seed=0)
    return v, LearningProblem.from_image(v.image, v.labels, v.prototypes, rho=0.1, T=5.0, tau=0.0,
                                         dtype=torch.float64)


def _fig2(out: Path, size: int, iters: int) -> Table:
    """Training curves from uniform patches with three gradient methods (Adam, step 0.05)."""
    v, problem = _voronoi("colors", size)
    methods = {"lowrank": dict(m=10, rank=1, recompute_forward=False), "autodiff-euler": dict(step_size=0.1),
               "autodiff-expint": dict(m=10)}
    learners = {name: WeightLearner(method_from_name(name, **kw), optimizer="adam", lr=0.05, iters=iters)
                for name, kw in methods.items()}
    s = learn_weights(ensure_out_dir(out), problem, v.image, v.labels, v.prototypes, learners, log=lambda _: None)
    rows = [[name, s["uniform"]["label_error"], r["final"]["label_error"], r["final"]["loss"], r["seconds"]]
            for name, r in s["learned"].items()]
    return Table(["method", "label error uniform %", "label error learned %", "final loss", "seconds"], rows,
                 caption=f"Fig. 2: {iters} iterations from uniform patches, Voronoi colors {size}x{size} "
                         f"(pixel-wise rounding {s['rounding_label_error']:.1f} % wrong). Paper: the three curves "
                         "are nearly identical.")


def _fig3(out: Path, size: int, studies: bool) -> Table:
    """Per-pixel cosine of lowrank (m = 10, r = 1) against autodiff of Euler with step 0.005."""
    _, problem = _voronoi("boundary", size)
    g = gradient_check(ensure_out_dir(out), problem, method_from_name("lowrank", m=10, rank=1),
                       method_from_name("autodiff-euler", step_size=0.005), studies=studies)
    return Table(["quantity", "ours", "paper"],
                 [["pixels with cosine >= 0.9 (%)", 100 * g["fraction_ge_0.9"], "> 99"],
                  ["pixels with cosine >= 0.99 (%)", 100 * g["fraction_ge_0.99"], "–"],
                  ["active pixels", g["active_pixels"], "–"],
                  ["overall cosine", g["overall_cosine"], "–"],
                  ["lowrank seconds", g["seconds"], "–"],
                  ["reference seconds", g["reference_seconds"], "–"]],
                 caption=f"Fig. 3: lowrank (m=10, r=1) vs autodiff of explicit Euler with a very small step, "
                         f"Voronoi boundary {size}x{size}, first training step")


def _fig5(out: Path, size: int, iters: int) -> Table:
    """The Sect. 4.4 predictor trained on Voronoi boundary seeds 0, 1 and applied to seed 100."""
    vs = {s: make_voronoi(size, scenario="boundary", seed=s) for s in (0, 1, 100)}
    train, test = ([(vs[s].image, vs[s].labels, vs[s].clean, vs[0].prototypes) for s in seeds]
                   for seeds in ((0, 1), (100,)))
    pred, tr, te = predictor_setup(train, test)
    _, rows = fit_predictor(ensure_out_dir(out), PredictorTrainer(iters=iters), pred, tr, te, test,
                            log=lambda _: None)
    return Table(["test image", "pixel-wise rounding %", "uniform weights %", "predicted weights %"],
                 [list(r.values()) for r in rows],
                 caption=f"Sect. 4.4 / Fig. 5: predictor trained {iters} iterations on noisy Voronoi boundary "
                         f"images {size}x{size}, applied to unseen images. Paper: predicted weights keep the "
                         "thin lines that uniform weights average out (Fig. 1c vs 5f).")


def learning_part(out: Path, config: ReproduceConfig) -> PartResult:
    fig2 = _fig2(out / "fig2", config.learn_size, config.learn_iters)
    fig3 = _fig3(out / "fig3", config.gradcheck_size, config.studies)
    fig5 = _fig5(out / "fig5", config.predict_size, config.predict_iters)
    figures = [("fig2/curves.png", "Fig. 2: loss and label error per iteration, three gradient methods"),
               ("fig2/weights_lowrank.png", "Learned weight patches (lowrank), top-left pixels"),
               ("fig3/gradcheck.png", "Fig. 3: per-pixel cosine and gradient norm"),
               ("fig3/rank_study.png", "Fig. 4b: singular values of X"),
               ("fig5/curves.png", "Fig. 5c: predictor training"),
               ("fig5/labeling_predicted_0.png", "Fig. 5f: labeling of an unseen image with predicted weights"),
               ("fig5/labeling_uniform_0.png", "Same image, uniform weights (Fig. 1c)")]
    if config.studies:
        figures += [("fig3/krylov_study.png", "Fig. 4a: Krylov dimension"),
                    ("fig3/time_study.png", "Fig. 4c: integration time T")]
    note = ("Paper 000 reports these results as figures; the one quantitative claim is >99 % of pixels "
            "with cosine >= 0.9 (Fig. 3a). Published reference: optimal parameters for a 512x512 image "
            "in under 10 s (see benchmarks/gradient.py).")
    return PartResult(title="Paper 000 — learning linearized assignment flows", tables=[fig2, fig3, fig5],
                      figures=[(f, c) for f, c in figures if (out / f).exists()], notes=[note])


ISING_ROWS = ("exact", "randomized_af", "mean_field", "gibbs", "loopy_bp")
ISING_COLS = ("kl", "energy", "entropy", "marginal_difference", "seconds")


def ising_part(out: Path, config: ReproduceConfig) -> PartResult:
    cfg = config.ising
    with _threads(1):
        result = run_ising_experiment(cfg, checkpoint_path=out / "checkpoint.pt",
                                      resume=(out / "checkpoint.pt").exists())
    save_table1_figures(out, result, cfg)
    save_json(out / "table.json", result.to_json())
    paper = ISING_PAPER
    rows = [[name] + [result.table[name][c] for c in ISING_COLS]
            + [paper[name].get(c, float("nan")) if isinstance(paper.get(name), dict) else float("nan")
               for c in ISING_COLS[:4]] for name in ISING_ROWS]
    table = Table(["model"] + list(ISING_COLS) + [f"paper {c}" for c in ISING_COLS[:4]], rows,
                  caption=f"Table 1: Ising {cfg.rows}x{cfg.cols}, field {cfg.field}, coupling "
                          f"{cfg.coupling}; AF trained {cfg.iterations} iterations, evaluated on "
                          f"{cfg.eval_samples:,} samples; mean field best of {cfg.mean_field_restarts} restarts")
    return PartResult(title="Paper 001 — randomized assignment flows (Table 1)", tables=[table],
                      figures=[("samples.png", "Fig. 2: samples (mean field, randomized AF, Gibbs)"),
                               ("marginals.png", "Fig. 3: P(class 0): exact, randomized AF, mean field"),
                               ("training_curve.png", "Training objective of the randomized AF")],
                      notes=[paper["note"], f"Paper's training: {paper['training']}.",
                             "loopy_bp: the kl column is the Bethe free energy + log Z* (not a KL divergence)."])


def _constant_image_bce() -> float:
    data = load_dataset("digits", dtype=torch.float64)
    mean = data.train.mean(dim=0, keepdim=True).clamp(1e-6, 1 - 1e-6).expand_as(data.val)
    return float(reconstruction_loss(mean, data.val, "bce").mean())


def encoding_part(out: Path, config: ReproduceConfig) -> PartResult:
    sizes, seeds, images = list(config.gfe_sizes), config.gfe_seeds, config.gfe_images
    with _threads(1):
        data = load_dataset("digits", dtype=torch.float32)
        t = compare(data, sizes, seeds, out, base=TrainConfig(optimizer="rmsprop", lr=2e-3), images=images,
                    full_images=3 * images)
        constant_bce = _constant_image_bce()
    rows = [[int(size)] + [r[m][k] for m in ("AE", "GFE-amd", "Mixed") for k in ("mean", "std")]
            + [None if r.get("gfe_vs_ae_relative") is None else 100 * r["gfe_vs_ae_relative"]]
            for size, r in t["rows"].items()]
    proto = t.get("protocol", {})
    table = Table(["train size", "AE BCE", "AE std", "GFE-amd BCE", "GFE-amd std", "Mixed BCE", "Mixed std",
                   "GFE vs AE (%)"], rows,
                  caption=f"Data efficiency on scikit-learn digits (8x8, {proto.get('val_size', '?')} held-out "
                          f"validation images): mean validation BCE over {seeds} seeds, "
                          f"{images} images seen per run, RMSprop lr 2e-3")
    ptable = Table(list(GFE_PAPER["headers"]), GFE_PAPER["rows"], caption=GFE_PAPER["caption"])
    first = sizes[0]
    figures = [(f, c) for f, c in (("data_efficiency.png", "Validation BCE against training-set size"),
                                   (f"curves_N{first}.png", f"Fig. 1: validation BCE against images seen, N={first}"),
                                   (f"reconstructions_N{first}.png", f"Fig. 3: reconstructions, N={first} "
                                    "(rows: data, AE, GFE-amd)")) if (out / f).exists()]
    note = (f"Reference point: the best constant image (the training pixel means) has validation BCE "
            f"{constant_bce:.4f}; a model below it has learned more than the average digit. "
            "The paper reports MNIST; here the bundled 8x8 digits stand in (MNIST/FashionMNIST run with "
            "`flowlearn gfe compare --dataset mnist --data-dir DIR`). The paper's claim to compare with: "
            "GFE-amd 21-42 % lower BCE than the AE at small training sizes, equal at full training.")
    return PartResult(title="Paper 002 — gradient flow encoding (Table 1, data efficiency)", tables=[table, ptable],
                      figures=figures, notes=[note])


#: name -> part function, in report order
PARTS = {"learning": learning_part, "randomized": ising_part, "encoding": encoding_part}


def environment() -> dict:
    """Versions, platform, CPU and device of this process (the report's last table)."""
    return {"flowlearn": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "scipy": scipy.__version__, "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}


def run_reproduce(out, config: ReproduceConfig = QUICK, *, parts=tuple(PARTS), restart: bool = False,
                  log=functools.partial(print, flush=True)) -> dict:
    """Run (or reuse) ``parts`` into ``out`` and write ``report.md``, ``report.html`` and ``reproduce.json``;
    returns the content of ``reproduce.json``.  ``restart`` reruns parts finished earlier."""
    out = ensure_out_dir(check_out_dir(out))
    env = environment()
    results: dict[str, PartResult] = {}
    total0 = time.perf_counter()
    for name in parts:
        part_dir = ensure_out_dir(out / name)
        done = out / f"{name}.part.json"  # beside the part's directory
        settings = config.part_settings(name)
        if done.exists() and not restart:
            stored = json.loads(done.read_text())
            if stored.get("settings") == settings:
                results[name] = PartResult.from_json(stored["result"])
                log(f"[{name}] finished earlier ({results[name].seconds:.0f} s): reusing {done}")
                continue
        log(f"[{name}] running ({config.name}) ...")
        t0 = time.perf_counter()
        res = PARTS[name](part_dir, config)
        res.seconds = time.perf_counter() - t0
        save_json(done, {"settings": settings, "result": asdict(res)})
        results[name] = res
        log(f"[{name}] done in {res.seconds:.0f} s")

    blocks = [("text", "Each part below runs flowlearn's experiments; the papers' published numbers stand beside "
                       "ours. Every figure and JSON file lies in the part's folder next to this report."),
              ("table", Table(["part", "wall time (s)"], [[r.title, r.seconds] for r in results.values()],
                              caption="Wall time of each part"))]
    for name, res in results.items():
        blocks += [("heading", res.title)] + [("table", t) for t in res.tables]
        blocks += [("text", note) for note in res.notes if note]
        blocks += [("figure", (out / name / path, caption)) for path, caption in res.figures]
    blocks += [("heading", "Environment"), ("table", Table(["key", "value"], [[k, v] for k, v in env.items()]))]
    md, page = write_report(out, f"flowlearn reproduction report ({config.name})", blocks)
    summary = {"config": config.name, "environment": env, "parts": {k: asdict(v) for k, v in results.items()},
               "seconds": time.perf_counter() - total0}
    save_json(out / "reproduce.json", summary)
    log(f"wrote {md} and {page}")
    return summary
