"""Tiled inference with dask (map_overlap): equal to whole-image inference up to the seams, and the same on a
local cluster of 2 workers as in one process."""

import numpy as np
import pytest
import torch

from flowlearn._checks import UserInputError
from flowlearn.learning.labeler import LabelerConfig, LabelerTrainer

da = pytest.importorskip("dask.array")

from flowlearn.learning.tiling import probabilities_tiled  # noqa: E402


@pytest.fixture(scope="module")
def trained():
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(48), torch.arange(48), indexing="ij")
    labels = torch.stack([((xx - 24) ** 2 + (yy - 24 + 6 * k) ** 2 < 150).long() for k in range(2)])
    images = (0.3 + 0.4 * labels + 0.3 * torch.randn(2, 48, 48, generator=g)).unsqueeze(-1)
    cfg = LabelerConfig(crop=24, batch=2, layers=2, iterations=20, pretrain_steps=10, scales=2, eval_every=10,
                        checkpoint_every=10**6, checkpoint_seconds=0)
    model, _ = LabelerTrainer(cfg, show_progress=False).fit(images, labels, [0], [1])
    image = (0.3 + 0.4 * (torch.rand(90, 70, generator=g) > 0.5).float().repeat_interleave(1, 0)
             + 0.3 * torch.randn(90, 70, generator=g)).unsqueeze(-1).numpy()
    return model.eval(), image


def test_tiles_equal_the_whole_image_up_to_the_seams(trained):
    model, image = trained
    whole = model.probabilities(torch.from_numpy(image)).numpy()
    tiled = probabilities_tiled(model, image, tile=32, overlap=24)
    assert tiled.shape == whole.shape == (90, 70, 2) and tiled.dtype == np.float32
    assert np.abs(tiled - whole).max() < 2e-3
    assert (tiled.argmax(-1) == whole.argmax(-1)).mean() > 0.999
    near = probabilities_tiled(model, image, tile=32, overlap=2)      # too little context: the seams show
    assert np.abs(near - whole).max() > np.abs(tiled - whole).max()


def test_store_streams_into_a_memory_map(trained, tmp_path):
    model, image = trained
    out = np.lib.format.open_memmap(tmp_path / "p.npy", mode="w+", dtype=np.float32, shape=(90, 70, 2))
    probabilities_tiled(model, np.load(_save(tmp_path, image), mmap_mode="r"), tile=32, overlap=24, out=out)
    assert np.array_equal(np.load(tmp_path / "p.npy"), probabilities_tiled(model, image, tile=32, overlap=24))


def _save(tmp_path, image):
    np.save(tmp_path / "image.npy", image)
    return tmp_path / "image.npy"


def test_local_cluster_of_two_workers_gives_the_single_process_result(trained):
    distributed = pytest.importorskip("distributed")
    model, image = trained
    one = probabilities_tiled(model, image, tile=32, overlap=24)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c, \
            distributed.Client(c):
        two = probabilities_tiled(model, image, tile=32, overlap=24, scheduler=None)
    assert np.array_equal(one, two)


def test_bad_tiling_arguments(trained):
    model, image = trained
    with pytest.raises(UserInputError, match="overlap must be at most tile"):
        probabilities_tiled(model, image, tile=16, overlap=20)
    with pytest.raises(UserInputError, match="image must be a non-empty array"):
        probabilities_tiled(model, image[:, :, [0, 0]], tile=16, overlap=4)
