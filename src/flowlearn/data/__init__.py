"""Data for image labeling: random Voronoi images, facades, features, prototypes, pictures.

All image arrays are numpy float64 of shape (H, W, C) (grey: C = 1), label maps numpy
int64 (H, W); :func:`window_features` is the one torch-in/torch-out function.
"""

from .alignment import LabelAlignment, align_labels
from .facades import FacadesData, load_facades
from .features import window_features
from .images import (
    colorize_labels,
    label_palette,
    overlay_labels,
    read_image,
    to_display,
)
from .prototypes import class_mean_prototypes, kmeans_prototypes, load_prototypes
from .rounding import nearest_prototype_labels
from .voronoi import (
    DEFAULT_NOISE,
    SCENARIOS,
    VoronoiImage,
    default_num_cells,
    make_voronoi,
)

__all__ = [
    "DEFAULT_NOISE",
    "FacadesData",
    "LabelAlignment",
    "SCENARIOS",
    "VoronoiImage",
    "align_labels",
    "class_mean_prototypes",
    "colorize_labels",
    "default_num_cells",
    "kmeans_prototypes",
    "label_palette",
    "load_facades",
    "load_prototypes",
    "make_voronoi",
    "nearest_prototype_labels",
    "overlay_labels",
    "read_image",
    "to_display",
    "window_features",
]
