"""Fig. 1-style demo: model symmetry, pipeline and picture."""

import pytest
import torch

from flowlearn.experiments.ambiguous_segmentation import ambiguous_image_model, run_segmentation_demo


def test_ambiguous_model_has_the_label_swap_symmetry():
    image, mask, model = ambiguous_image_model(8, 10, seed=2)
    assert image.shape == (8, 10) and mask.any() and (~mask).any()
    torch.testing.assert_close(model.unary[:, 1], model.unary[:, 2])
    g = torch.Generator().manual_seed(0)
    cfg = torch.randint(3, (20, 80), generator=g)
    swapped = torch.where(cfg == 1, 2, torch.where(cfg == 2, 1, cfg))
    torch.testing.assert_close(model.energy(cfg), model.energy(swapped))


def test_demo_runs_and_writes_png(tmp_path):
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = run_segmentation_demo(tmp_path, rows=8, cols=8, iterations=5, batch_size=16, num_samples=4)
    finally:
        torch.set_num_threads(old)
    assert r.png is not None and r.png.is_file()
    assert r.joint_samples.shape == (4, 64) and r.marginal_samples.shape == (4, 64)
    assert 0.0 <= r.coherent_marginal <= 1.0 and 0.0 <= r.coherent_joint <= 1.0
    torch.testing.assert_close(r.marginals.sum(-1), torch.ones(64))
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        run_segmentation_demo(None, num_samples=0)
