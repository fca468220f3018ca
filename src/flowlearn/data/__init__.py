"""Data for image labeling: random Voronoi images, facades, features, prototypes, pictures.

All image arrays are numpy float64 of shape (H, W, C) (grey: C = 1), label maps numpy
int64 (H, W); :func:`window_features` is the one torch-in/torch-out function.
"""

from .alignment import load_facades
from .images import colorize_labels, read_image
from .prototypes import class_mean_prototypes, kmeans_prototypes, load_prototypes, nearest_prototype_labels
from .voronoi import VoronoiImage, make_voronoi

__all__ = ["VoronoiImage", "class_mean_prototypes", "colorize_labels", "kmeans_prototypes", "load_facades",
           "load_prototypes", "make_voronoi", "nearest_prototype_labels", "read_image"]
