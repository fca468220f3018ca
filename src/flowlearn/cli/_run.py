"""What every command that writes a run directory shares: ``--out``, ``--resume``, ``--overwrite``,
``--threads``, ``--device``, and the rank-0-only :class:`~flowlearn.engine.RunDirectory`.

One resume rule for every command: a directory holding an earlier run is continued only with
``--resume`` (same command; its checkpoints are checked by identity) and replaced only with
``--overwrite``; otherwise the command refuses to start.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from .._checks import UserInputError, check_int
from ..engine import RunDirectory
from ..engine.distributed import world
from ..io import check_out_dir

__all__ = ["add_run_arguments", "check_run", "open_run", "resolve_device", "set_threads", "write_labeling", "write_probabilities"]


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
    if name is None:
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise UserInputError(f"--device must be 'cpu', 'cuda' or 'cuda:N', got {name!r}") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserInputError(f"--device {name!r} asks for CUDA, but this torch build or machine has no CUDA "
                                 f"device (torch {torch.__version__}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserInputError(f"--device {name!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif device.type != "cpu":
        raise UserInputError(f"--device must be 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    return device


class _Follower:
    """The run directory seen from a rank other than 0 under torchrun: no lock, no manifest."""

    def __init__(self, path):
        self.path, self.resumed = Path(path), False

    def set_status(self, status) -> None:
        pass


@contextlib.contextmanager
def open_run(args, command: str, config: dict | None = None, *, seed=None):
    """The run directory of ``args.out`` for ``command`` (a :class:`RunDirectory` on rank 0)."""
    _, rank = world()
    if rank != 0:
        check_out_dir(args.out, name="--out")
        yield _Follower(args.out)
        return
    cfg = {k: v for k, v in vars(args).items() if k not in ("func",) and not callable(v)}
    cfg.update(config or {})
    with _run_directory(args, command, cfg, seed) as run:
        yield run


def _run_directory(args, command: str, config: dict | None = None, seed=None) -> RunDirectory:
    return RunDirectory(args.out, command=command, config=config, seed=seed, resume=bool(getattr(args, "resume", False)),
                        overwrite=bool(getattr(args, "overwrite", False)), resumable=hasattr(args, "resume"))


def check_run(args, command: str) -> None:
    """Before computing anything: ``--out`` could be created and written, and holds no earlier run that this
    command would refuse (the same check :func:`open_run` makes, without locking, creating or deleting)."""
    check_out_dir(args.out, name="--out")
    if world()[1] == 0:
        _run_directory(args, command).check()


def write_labeling(out: Path, image, labels, metrics: dict) -> None:
    """The outputs of a labeling shared by ``label`` (flows and ``--model``): ``labels.npy``,
    ``labels.png``, ``overlay.png`` and ``metrics.json``."""
    from ..data import colorize_labels
    from ..data.images import overlay_labels
    from ..io import save_json, save_npy, save_png

    save_npy(out / "labels.npy", labels)
    save_png(out / "labels.png", colorize_labels(labels))
    save_png(out / "overlay.png", overlay_labels(image, labels))
    save_json(out / "metrics.json", metrics)


def write_probabilities(out: Path, labels, probabilities, entropy, *, title: str = "") -> list:
    """The outputs of a model's labeling beside :func:`write_labeling`'s, for one image (``labels`` ``(H, W)``,
    ``probabilities`` ``(H, W, J)``, ``entropy`` ``(H, W)``) or a stack (a leading ``Z`` axis):

    * ``probabilities.tif``: float32, one page per class ``j = 0..J-1`` (ImageJ channels): ``(J, H, W)``,
      or ``(Z, J, H, W)`` for a stack (axes ``ZCYX``) -- every class, also when ``J = 2``;
    * ``entropy.tif``: float32 ``(H, W)`` or ``(Z, H, W)``, the entropy of the probabilities in nats
      (0 = certain, ``log J`` = undecided);
    * ``labels.tif``: uint8 (``J <= 256``) or uint16 labels ``(H, W)`` or ``(Z, H, W)``;
    * ``entropy.png``: the entropy (of the middle slice of a stack) with a title and a colour bar.

    Returns the names written."""
    import numpy as np
    from matplotlib.figure import Figure

    from ..io import save_figure, save_tiff

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
