"""What every command that writes a run directory shares: ``--out``, ``--resume``, ``--overwrite``,
``--threads``, ``--device``, the rank-0-only :class:`~flowlearn.engine.RunDirectory`, the label-map input
and the labeling outputs.

One resume rule for every command: a directory holding an earlier run is continued only with
``--resume`` (same command; its checkpoints are checked by identity) and replaced only with
``--overwrite``; otherwise the command refuses to start.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from .._checks import UserInputError, check_int
from ..data import colorize_labels
from ..data.images import overlay_labels
from ..engine import RunDirectory
from ..engine.distributed import world
from ..io import check_npy, check_out_dir, existing_file, save_figure, save_json, save_npy, save_png, save_tiff

__all__ = ["add_run_arguments", "check_run", "load_label_map", "open_run", "resolve_device", "set_threads",
           "write_labeling", "write_probabilities"]


def add_run_arguments(parser, *, resumable: bool = True, threads_default=None) -> None:
    """``--out`` (required), ``--overwrite``, ``--resume`` (when ``resumable``) and ``--threads``."""
    parser.add_argument("--out", required=True, help="output directory (one run per directory)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the outputs of an earlier run in --out")
    if resumable:
        parser.add_argument("--resume", action="store_true",
                            help="continue the earlier run in --out from its checkpoint (same command and inputs)")
    parser.add_argument("--threads", type=int, default=threads_default,
                        help="torch CPU threads (default: " + ("torch's choice" if threads_default is None
                                                                else str(threads_default)) + ")")


def set_threads(threads) -> None:
    """``torch.set_num_threads`` after checking ``--threads``."""
    if threads is not None:
        torch.set_num_threads(check_int("--threads", threads, minimum=1, maximum=4096))


def resolve_device(name) -> torch.device:
    """``--device`` as a ``torch.device``; a clear error when CUDA is asked for but not available."""
    bad = f"--device must be 'cpu', 'cuda' or 'cuda:N', got {name!r}"
    try:
        device = torch.device("cpu" if name is None else name)
    except (RuntimeError, ValueError) as exc:
        raise UserInputError(bad) from exc
    if device.type not in ("cpu", "cuda"):
        raise UserInputError(bad)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"--device {name!r} asks for CUDA, but this torch build or machine has no CUDA "
                             f"device (torch {torch.__version__}); use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserInputError(f"--device {name!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


@contextlib.contextmanager
def open_run(args, command: str, config: dict | None = None, *, seed=None):
    """The run directory of ``args.out`` for ``command``: a :class:`RunDirectory` on rank 0, on the other ranks
    under torchrun a stand-in without lock or manifest."""
    if world()[1] != 0:
        check_out_dir(args.out, name="--out")
        yield SimpleNamespace(path=Path(args.out), resumed=False, set_status=lambda status: None)
        return
    cfg = {k: v for k, v in vars(args).items() if not callable(v)} | (config or {})
    with _run_directory(args, command, cfg, seed) as run:
        yield run


def _run_directory(args, command: str, config: dict | None = None, seed=None) -> RunDirectory:
    return RunDirectory(args.out, command=command, config=config, seed=seed, resumable=hasattr(args, "resume"),
                        resume=bool(getattr(args, "resume", False)), overwrite=bool(getattr(args, "overwrite", False)))


def check_run(args, command: str) -> None:
    """Before computing anything: ``--out`` could be created and written, and holds no earlier run that this
    command would refuse (the same check :func:`open_run` makes, without locking, creating or deleting)."""
    check_out_dir(args.out, name="--out")
    if world()[1] == 0:
        _run_directory(args, command).check()


def load_label_map(path, shape, *, option: str = "--labels") -> np.ndarray:
    """A ground-truth label map, an integer ``.npy`` array of ``shape`` (H, W) with values >= 0, as int64; a
    one-line error naming ``option`` and the path otherwise."""
    path = existing_file(path, option, "an .npy label map")
    where = f"{option} file {str(path)!r}"
    check_npy(path, where, extra_per_element=8.0, hint=f"check the {option} file")   # before np.load allocates
    try:
        labels = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserInputError(f"cannot read {where} as a .npy array: {exc}") from exc
    if labels.shape != tuple(shape):
        raise UserInputError(f"{option} must have the image's shape {tuple(shape)}, got shape {labels.shape} "
                             f"in {str(path)!r}")
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise UserInputError(f"{where} must hold an integer label map, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise UserInputError(f"{where} must hold labels >= 0, got minimum {labels.min()}")
    return labels.astype(np.int64)


def write_labeling(out: Path, image, labels, metrics: dict) -> None:
    """The outputs of a labeling shared by ``label`` (flows and ``--model``): ``labels.npy``,
    ``labels.png``, ``overlay.png`` and ``metrics.json``."""
    save_npy(out / "labels.npy", labels)
    save_png(out / "labels.png", colorize_labels(labels))
    save_png(out / "overlay.png", overlay_labels(image, labels))
    save_json(out / "metrics.json", metrics)


def write_probabilities(out: Path, labels, probabilities, entropy, *, title: str = "") -> list:
    """The outputs of a model's labeling beside :func:`write_labeling`'s, for one image (``labels`` ``(H, W)``,
    ``probabilities`` ``(H, W, J)``, ``entropy`` ``(H, W)`` in nats) or a stack (a leading ``Z`` axis):
    ``probabilities.tif`` (float32, one page per class, axes ``CYX`` or ``ZCYX``), ``entropy.tif`` (float32),
    ``labels.tif`` (uint8 for ``J <= 256``, else uint16) and ``entropy.png`` (of the middle slice of a stack).
    Returns the names written."""
    from matplotlib.figure import Figure

    labels, probs, ent = np.asarray(labels), np.asarray(probabilities, dtype=np.float32), np.asarray(entropy)
    stack = labels.ndim == 3
    J = probs.shape[-1]
    save_tiff(out / "probabilities.tif", np.moveaxis(probs, -1, -3), "ZCYX" if stack else "CYX")
    save_tiff(out / "entropy.tif", ent.astype(np.float32), "ZYX" if stack else "YX")
    save_tiff(out / "labels.tif", labels.astype(np.uint8 if J <= 256 else np.uint16), "ZYX" if stack else "YX")
    z = labels.shape[0] // 2 if stack else None
    fig = Figure(figsize=(5, 4.2))
    ax = fig.add_subplot()
    im = ax.imshow(ent[z] if stack else ent, cmap="magma", vmin=0.0, vmax=float(np.log(J)))
    fig.colorbar(im, ax=ax, label="entropy (nats)")
    ax.set_axis_off()
    ax.set_title((title + "\n" if title else "") + "per-pixel entropy of the class probabilities"
                 + (f" (slice {z})" if stack else ""), fontsize=9)
    save_figure(out / "entropy.png", fig)
    return ["probabilities.tif", "entropy.tif", "labels.tif", "entropy.png"]
