r"""Tiled inference of a :class:`~flowlearn.learning.labeler.LabelerModel` for images of any size with
``dask.array`` (``map_overlap``): each tile is labelled with a margin of ``overlap`` pixels of its neighbours, which
is cut off again, so the seams see the context a whole-image run sees up to the model's reach.

The input may be anything ``dask.array.from_array`` reads lazily (NumPy array, memory-mapped ``.npy``, zarr or
``tifffile`` zarr store) or a dask array; the probabilities ``(H, W, J)`` float32 are computed tile by tile, so
memory stays at a few tiles (:func:`probabilities_tiled`, or ``dask.array.store`` of :func:`tiled_probabilities`),
and a ``distributed.Client`` spreads the tiles over its workers.  Requires ``pip install "dask[array]"``.
"""

from __future__ import annotations

import numpy as np
import torch

from .._checks import UserInputError, check_int

__all__ = ["probabilities_tiled", "tiled_probabilities"]


def _dask():
    try:
        import dask.array as da
    except ImportError:
        raise UserInputError('tiled inference needs dask: pip install "dask[array]"') from None
    return da


def tiled_probabilities(model, image, *, tile: int = 512, overlap: int = 48):
    r"""The lazy dask array of class probabilities ``(H, W, J)`` float32 of ``image`` ``(H, W, C)`` (scaled like
    the model's training images, array-like or dask), labelled by tiles of ``tile x tile`` pixels with
    ``overlap <= tile`` pixels of context on each side, which the model's reach should fit in."""
    da = _dask()
    tile = check_int("tile", tile, minimum=8)
    overlap = check_int("overlap", overlap, minimum=0)
    if overlap > tile:
        raise UserInputError(f"overlap must be at most tile = {tile}, got {overlap}")
    x = image if isinstance(image, da.Array) else da.from_array(image, chunks=(tile, tile, -1))
    if x.ndim != 3 or x.shape[2] != model.channels or 0 in x.shape:
        raise UserInputError(f"image must be a non-empty array (H, W, {model.channels}), got shape {tuple(x.shape)}")
    x = x.rechunk((tile, tile, -1)).astype(np.float32)

    def block(b: np.ndarray) -> np.ndarray:
        return model.probabilities(torch.from_numpy(np.ascontiguousarray(b))).numpy()

    return map_with_context(x, (overlap, overlap), block, channels=model.num_labels, dtype=np.float32)


def map_with_context(x, margins, fn, *, channels: int, dtype):
    r"""``fn`` on every block of the dask array ``x`` ``(*spatial, C)`` (last axis in one chunk) with ``margins[a]``
    entries of its neighbours' context along spatial axis ``a``, the context cut off again (``boundary="none"``:
    the array's own borders stay borders); ``fn(block) -> (*block spatial, channels)`` of ``dtype``.  A block
    shorter than its margin is merged into its neighbour; an axis in one block gets no margin."""
    da = _dask()
    from dask.array.overlap import ensure_minimum_chunksize

    k = len(margins)
    chunks = [c if len(c) == 1 else ensure_minimum_chunksize(d, c) for c, d in zip(x.chunks[:k], margins)]
    depth = {a: (margins[a] if len(chunks[a]) > 1 else 0) for a in range(k)} | {k: 0}
    x = x.rechunk((*chunks, -1))
    xo = da.overlap.overlap(x, depth=depth, boundary="none")                    # blocks with their context
    yo = xo.map_blocks(fn, chunks=xo.chunks[:k] + ((channels,),), dtype=dtype, meta=np.empty((0,) * (k + 1), dtype))
    return da.overlap.trim_internal(yo, depth, boundary="none")                 # context cut off


def compute_or_store(y, out=None, scheduler: str | None = "synchronous"):
    """Compute the dask array ``y``, or store it block by block into ``out`` (checked shape) and return ``out``."""
    da = _dask()
    kw = {} if scheduler is None else {"scheduler": scheduler}
    if out is None:
        return y.compute(**kw)
    if tuple(out.shape) != tuple(y.shape):
        raise UserInputError(f"out must have shape {tuple(y.shape)}, got {tuple(out.shape)}")
    da.store(y, out, lock=True, **kw)
    return out


def probabilities_tiled(model, image, *, tile: int = 512, overlap: int = 48, out=None,
                        scheduler: str | None = "synchronous") -> np.ndarray:
    r"""Probabilities ``(H, W, J)`` float32 of ``image`` by tiles (:func:`tiled_probabilities`), computed, or
    stored tile by tile into ``out`` (e.g. ``numpy.lib.format.open_memmap``) and returned; ``scheduler``: dask's
    (default one tile at a time; ``None`` the active one, e.g. a ``distributed.Client``'s)."""
    return compute_or_store(tiled_probabilities(model, image, tile=tile, overlap=overlap), out, scheduler)
