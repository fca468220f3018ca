"""Random Voronoi test images for image labeling (paper 000, Sect. 4.1, Fig. 1a/b).

``"boundary"`` (scenario 1)
    Thin (one pixel wide) black cell boundaries (label 0, value 0) on white cell interiors
    (label 1, value 1); ``C = 1``, ``J = 2``.
``"colors"`` (scenario 2)
    Each cell gets one of 8 labels, the corners of the RGB cube, different from its neighbours'
    whenever a greedy colouring manages it; ``C = 3``, ``J = 8``.

Gaussian noise ``N(0, noise^2)`` is added to every pixel and channel, not clipped.  As the
prototypes are corners of the unit cube, nearest-prototype rounding is wrong with probability
``P_err = 1 - Phi(0.5 / noise)`` (boundary) or ``1 - Phi(0.5 / noise)^3`` (colors), ``Phi`` the
standard normal CDF; the defaults give 15.87 % (boundary, ``noise = 0.5``) and 49.24 % (colors,
``noise = 0.6``: "about 50 % wrongly labeled pixels", paper 000, Sect. 4.1).

Independent streams of ``seed`` (:class:`numpy.random.SeedSequence`) draw the sites, the colouring and
the noise: the labels do not depend on ``noise``, and ``image - clean = noise * Z`` for one fixed ``Z``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from .._checks import UserInputError, UserTypeError, check_choice, check_int, check_memory, check_positive, check_seed

__all__ = ["DEFAULT_NOISE", "SCENARIOS", "VoronoiImage", "default_num_cells", "make_voronoi", "voronoi_cells"]

SCENARIOS = ("boundary", "colors")

#: Default noise std per scenario; expected rounding error 15.87 % (boundary), 49.24 % (colors).
DEFAULT_NOISE = {"boundary": 0.5, "colors": 0.6}

#: Pixels per Voronoi cell used when ``num_cells`` is not given (128x128 -> 32 cells).
PIXELS_PER_CELL = 512

# The 8 corners of the RGB cube: black, red, green, blue, yellow, magenta, cyan, white.
_COLOR_PROTOTYPES = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]],
                             dtype=np.float64)
_BOUNDARY_PROTOTYPES = np.array([[0.0], [1.0]])


@dataclass(frozen=True)
class VoronoiImage:
    """A random Voronoi labeling problem with its ground truth.

    Attributes
    ----------
    image : ndarray, shape (H, W, C), float64
        Noisy image ``clean + noise * Z`` (not clipped).
    clean : ndarray, shape (H, W, C), float64
        Noise-free image ``prototypes[labels]``.
    labels : ndarray, shape (H, W), int64
    prototypes : ndarray, shape (J, C), float64
    scenario : str
    noise : float
        Standard deviation of the noise actually used.
    seed : int
    cells : ndarray, shape (H, W), int64
        Voronoi cell (nearest site) of every pixel.
    sites : ndarray, shape (num_cells, 2), float64
        Cell sites as (row, column) coordinates of the pixel grid.
    stats : dict
        ``num_cells``, ``num_adjacent_pairs`` (cells sharing a 4-neighbour edge),
        ``num_label_conflicts`` (adjacent cells with the same label), ``label_counts``.
    """

    image: np.ndarray
    clean: np.ndarray
    labels: np.ndarray
    prototypes: np.ndarray
    scenario: str
    noise: float
    seed: int
    cells: np.ndarray = field(repr=False)
    sites: np.ndarray = field(repr=False)
    stats: dict = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        """Number of labels ``J``."""
        return int(self.prototypes.shape[0])

    @property
    def num_cells(self) -> int:
        """Number of Voronoi sites."""
        return int(self.sites.shape[0])


def default_num_cells(height: int, width: int) -> int:
    """Default number of Voronoi cells: one per :data:`PIXELS_PER_CELL` pixels, at least 4."""
    return max(4, int(round(height * width / PIXELS_PER_CELL)))


def _parse_size(size) -> tuple[int, int]:
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise UserInputError(f"size must be an int or a pair (H, W), got {size!r}")
        return check_int("size[0] (height)", size[0], minimum=8), check_int("size[1] (width)", size[1], minimum=8)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise UserTypeError(f"size must be an int or a pair (H, W) of ints, got {size!r}")
    s = check_int("size", size, minimum=8)
    return s, s


def voronoi_cells(sites: np.ndarray, height: int, width: int) -> np.ndarray:
    """Index ``(H, W)`` of the nearest site (``(K, 2)``, row and column) of every pixel ``(r, c)``."""
    points = np.indices((height, width), dtype=np.float64).reshape(2, -1).T
    _, idx = cKDTree(sites).query(points, k=1)
    return idx.reshape(height, width).astype(np.int64)


def _boundary_mask(cells: np.ndarray) -> np.ndarray:
    """One-pixel-thin cell boundaries: the pixels whose right or lower 4-neighbour lies in another cell."""
    mask = np.zeros(cells.shape, dtype=bool)
    mask[:, :-1] |= cells[:, :-1] != cells[:, 1:]
    mask[:-1, :] |= cells[:-1, :] != cells[1:, :]
    return mask


def _adjacent_pairs(cells: np.ndarray) -> np.ndarray:
    """Unique unordered pairs ``(a, b)``, ``a < b``, of cells sharing a 4-neighbour edge."""
    pairs = np.concatenate([np.stack([cells[:, :-1].ravel(), cells[:, 1:].ravel()], axis=1),
                            np.stack([cells[:-1, :].ravel(), cells[1:, :].ravel()], axis=1)])
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.sort(pairs, axis=1)
    return np.unique(pairs, axis=0) if pairs.size else pairs.reshape(0, 2)


def _color_cells(num_cells: int, pairs: np.ndarray, num_labels: int, rng: np.random.Generator) -> np.ndarray:
    """Random greedy colouring by decreasing degree: a label least used by the coloured neighbours."""
    neighbours = [[] for _ in range(num_cells)]
    for a, b in pairs:
        neighbours[a].append(b)
        neighbours[b].append(a)
    degree = np.array([len(n) for n in neighbours])
    order = np.lexsort((rng.permutation(num_cells), -degree))
    colour = np.full(num_cells, -1, dtype=np.int64)
    for cell in order:
        used = colour[neighbours[cell]]
        counts = np.bincount(used[used >= 0], minlength=num_labels)
        candidates = np.flatnonzero(counts == counts.min())
        colour[cell] = candidates[rng.integers(candidates.size)]
    return colour


#: largest accepted noise standard deviation (1e6 times the prototypes' range)
MAX_NOISE = 1e6


def make_voronoi(size, scenario: str = "colors", noise=None, seed: int = 0, num_cells=None) -> VoronoiImage:
    """Generate a random Voronoi labeling image with ground truth (paper 000, Sect. 4.1).

    Cell sites are drawn uniformly in ``[0, H) x [0, W)``; every pixel belongs to the cell of
    its nearest site.  The module docstring describes the scenarios and the default noise.

    Parameters
    ----------
    size : int or (int, int)
        ``H = W = size`` or ``(H, W)``; each side >= 8.
    scenario : {"colors", "boundary"}
    noise : float or None
        Standard deviation of the Gaussian noise, finite and >= 0; ``None`` takes :data:`DEFAULT_NOISE`.
    seed : int
        The result is a pure function of the arguments.
    num_cells : int or None
        Number of Voronoi sites in ``[2, H*W]``; default :func:`default_num_cells` (``H*W/512``, at least 4).

    Returns
    -------
    VoronoiImage
        ``C, J = 1, 2`` (boundary) or ``3, 8`` (colors).
    """
    height, width = _parse_size(size)
    check_choice("scenario", scenario, SCENARIOS)
    noise = DEFAULT_NOISE[scenario] if noise is None else check_positive("noise", noise, strict=False)
    if noise > MAX_NOISE:
        raise UserInputError(f"noise must be at most {MAX_NOISE:g} (the prototypes lie in [0, 1]), got {noise!r}")
    seed = check_seed("seed", seed)
    # sites and cells, clean image, noise and image (3 float64 channels each), labels
    check_memory(f"a {height}x{width} Voronoi image", 120.0 * height * width, hint="use a smaller --size")
    if num_cells is None:
        num_cells = default_num_cells(height, width)
    num_cells = check_int("num_cells", num_cells, minimum=2, maximum=height * width)

    site_seq, colour_seq, noise_seq = np.random.SeedSequence(seed).spawn(3)
    site_rng = np.random.default_rng(site_seq)
    sites = site_rng.uniform(0.0, 1.0, size=(num_cells, 2)) * np.array([height, width], dtype=np.float64)
    sites -= 0.5  # pixel centres are the integers 0..H-1: sites cover [-0.5, H-0.5) like the pixels
    cells = voronoi_cells(sites, height, width)
    pairs = _adjacent_pairs(cells)

    if scenario == "boundary":
        prototypes = _BOUNDARY_PROTOTYPES.copy()
        labels = np.where(_boundary_mask(cells), 0, 1).astype(np.int64)
        conflicts = 0
    else:
        prototypes = _COLOR_PROTOTYPES.copy()
        cell_label = _color_cells(num_cells, pairs, len(prototypes), np.random.default_rng(colour_seq))
        labels = cell_label[cells]
        conflicts = int(np.sum(cell_label[pairs[:, 0]] == cell_label[pairs[:, 1]])) if pairs.size else 0

    clean = prototypes[labels]
    standard_normal = np.random.default_rng(noise_seq).standard_normal(clean.shape)
    image = clean + noise * standard_normal
    stats = {"num_cells": num_cells, "num_adjacent_pairs": int(pairs.shape[0]), "num_label_conflicts": conflicts,
             "label_counts": np.bincount(labels.ravel(), minlength=len(prototypes)).tolist()}
    return VoronoiImage(image=image, clean=clean, labels=labels, prototypes=prototypes, scenario=scenario,
                        noise=float(noise), seed=seed, cells=cells, sites=sites, stats=stats)
