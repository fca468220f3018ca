"""The 3-D flow over a probability stack (``flowlearn.learning.stack_flow``) and ``flowlearn label --z-flow``.

Tolerances: blockwise = whole stack to 1e-8 in float64 (measured 2e-10) when ``overlap`` and ``tile_overlap`` are
at least the reach ``m`` (the two Krylov solves are fitted on different domains, so equality is up to their
convergence); a z-constant stack with ``z_weight = 0`` equals the 2-D flow on one slice to 1e-6 (float32).
"""

import json

import numpy as np
import pytest
import tifffile
import torch

from flowlearn._checks import UserInputError, UserTypeError
from flowlearn.cli.main import main
from flowlearn.linearized import LinearizedAssignmentLayer, LowRank

da = pytest.importorskip("dask.array")
from flowlearn.learning.stack_flow import (
    flow_block,
    stack_flow,
    stack_patch,
    z_weight_from_spacing,
)


def _probs(shape, J=3, dtype=np.float64, seed=0):
    logits = np.random.default_rng(seed).normal(size=(*shape, J)) * 2
    return torch.softmax(torch.from_numpy(logits), -1).numpy().astype(dtype)


def test_patch_and_spacing():
    p = stack_patch(0.5)
    assert p.shape == (7,) and float(p.sum()) == pytest.approx(1.0)
    np.testing.assert_allclose(p.numpy(), np.array([0.5, 1, 1, 1, 1, 1, 0.5]) / 6.0)
    assert stack_patch(0.0, 26)[13] == pytest.approx(1 / 9)
    assert z_weight_from_spacing(50.0, 4.0) == pytest.approx(0.0064)


@pytest.mark.parametrize("T", [1.0, 3.0])
def test_blockwise_equals_whole_stack_when_overlap_covers_the_reach(T):
    P = _probs((24, 10, 10))
    kw = {"T": T, "z_weight": 1.0, "m": 6}
    whole = flow_block(P, **kw)
    tol = 1e-8 if T == 1.0 else 1e-5          # measured 2e-10 and 5e-7
    np.testing.assert_allclose(stack_flow(P, block=6, overlap=6, **kw), whole, rtol=0, atol=tol)
    np.testing.assert_allclose(stack_flow(P, block=6, overlap=6, tile=8, tile_overlap=6, **kw), whole,
                               rtol=0, atol=tol)
    # a margin shorter than the reach is visibly different: the test above is not vacuous
    assert np.abs(stack_flow(P, block=6, overlap=2, **kw) - whole).max() > 100 * tol


def test_z_constant_stack_without_z_weight_is_the_2d_flow():
    one = _probs((1, 9, 11), J=2, dtype=np.float32)
    stack = np.repeat(one, 5, axis=0)
    out = stack_flow(stack, T=2.0, z_weight=0.0, block=2, overlap=2, start="input")
    # the 2-D layer with the 5-point patch (3 x 3 slots, corners 0) on the slice
    patch2d = torch.tensor([0, 1, 0, 1, 1, 1, 0, 1, 0], dtype=torch.float32) / 5
    layer = LinearizedAssignmentLayer(rho=1.0, T=2.0, method=LowRank(m=10), size=3)
    D = -torch.from_numpy(one[0]).clamp_min(1e-6).log().movedim(-1, 0)[None]
    ref = layer(patch2d.view(1, 9, 1, 1).expand(1, 9, 9, 11), D, torch.log_softmax(-D, 1))[0].exp().movedim(0, -1)
    for z in range(5):
        np.testing.assert_allclose(out[z], ref.numpy(), rtol=0, atol=1e-6)


def test_z_weight_couples_the_slices():
    """Two z-constant slices (both at the volume's border) see a z neighbour equal to themselves: the in-plane
    stencil becomes lazier, the 2-D flow with centre weight (1 + w)/(5 + w); and a slice unlike its neighbours
    is pulled towards them the more, the larger z_weight."""
    one = _probs((1, 7, 8), J=2, dtype=np.float64, seed=1)
    w = 0.7
    out = stack_flow(np.repeat(one, 2, axis=0), T=1.5, z_weight=w, start="barycenter")
    patch2d = torch.tensor([0, 1, 0, 1, 1 + w, 1, 0, 1, 0], dtype=torch.float64) / (5 + w)
    layer = LinearizedAssignmentLayer(rho=1.0, T=1.5, method=LowRank(m=10), size=3)
    D = -torch.from_numpy(one[0]).clamp_min(1e-6).log().movedim(-1, 0)[None]
    ref = layer(patch2d.view(1, 9, 1, 1).expand(1, 9, 7, 8), D)[0].exp().movedim(0, -1).numpy()
    np.testing.assert_allclose(out[0], ref, rtol=0, atol=1e-8)
    np.testing.assert_allclose(out[1], ref, rtol=0, atol=1e-8)
    odd = np.concatenate([np.full((1, 7, 8, 2), [0.9, 0.1]), np.full((1, 7, 8, 2), [0.2, 0.8]),
                          np.full((1, 7, 8, 2), [0.9, 0.1])])
    pulled = [stack_flow(odd, T=2.0, z_weight=zw, start="barycenter")[1, ..., 0].mean() for zw in (0, 0.1, 1, 10)]
    assert pulled[0] < 0.2 and pulled == sorted(pulled) and pulled[-1] > 0.5   # measured 0.16, 0.18, 0.48, 0.80


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_shape_and_simplex_kept(dtype, tmp_path):
    P = _probs((5, 6, 7), J=3, dtype=dtype)
    out = stack_flow(P, T=1.0, block=2, overlap=1)
    assert out.shape == P.shape and out.dtype == dtype
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)
    lazy = stack_flow(da.from_array(P, chunks=(1, 6, 7, 3)), T=1.0, block=2, overlap=1)   # a dask input
    np.testing.assert_allclose(lazy, out, atol=1e-6)
    mm = np.lib.format.open_memmap(tmp_path / "o.npy", mode="w+", dtype=dtype, shape=P.shape)
    assert stack_flow(P, T=1.0, block=2, overlap=1, out=mm) is mm
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), out)


BAD = [
    ({"prob": np.zeros((4, 5, 2), np.float32)}, UserInputError, "prob must be a non-empty array"),
    ({"prob": np.zeros((2, 4, 5, 1), np.float32)}, UserInputError, "prob must .*J >= 2"),
    ({"prob": np.zeros((2, 4, 5, 2), np.int64)}, UserTypeError, "prob must be float32 or float64"),
    ({"prob": np.full((2, 4, 5, 2), 1.5, np.float32)}, UserInputError, r"prob must lie in \[0, 1\]"),
    ({"prob": np.full((2, 4, 5, 2), np.nan, np.float32)}, UserInputError, "prob must be finite"),
    ({"T": 0.0}, UserInputError, "T must be finite and > 0"),
    ({"rho": -1.0}, UserInputError, "rho must be"),
    ({"z_weight": -0.1}, UserInputError, "z_weight must be finite and >= 0"),
    ({"z_weight": "a"}, UserTypeError, "z_weight must be a number"),
    ({"block": 0}, UserInputError, "block must be >= 1"),
    ({"block": 2, "overlap": 3}, UserInputError, "overlap must be at most block = 2"),
    ({"tile": 4}, UserInputError, "tile must be >= 8"),
    ({"tile": 8, "tile_overlap": 9}, UserInputError, "tile_overlap must be at most tile = 8"),
    ({"eps": 0.7}, UserInputError, "eps must be in"),
    ({"start": "middle"}, UserInputError, "start must be one of"),
    ({"neighbourhood": 8}, UserInputError, "neighbourhood must be 6"),
]


@pytest.mark.parametrize("kw,exc,match", BAD, ids=[b[2][:30] for b in BAD])
def test_bad_arguments_are_one_line_errors(kw, exc, match):
    kw = {"prob": np.full((2, 4, 5, 2), 0.5, np.float32), "block": 1, "overlap": 0} | kw
    with pytest.raises(exc, match=match) as info:
        stack_flow(kw.pop("prob"), **kw)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------ CLI
def _stack(tmp_path, Z=3):
    stack = np.random.default_rng(2).integers(0, 256, size=(Z, 24, 20), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    return stack


def test_cli_z_flow_outputs_come_from_the_3d_flow(tmp_path):
    from flowlearn.learning.labeler import load_model, model_path
    from flowlearn.learning.labeler_io import label_stack

    stack = _stack(tmp_path)
    out = tmp_path / "out"
    argv = ["label", str(tmp_path / "stack.tif"), "--model", "isbi-membranes", "--z-flow", "--z-T", "1",
            "--z-weight", "0.5", "--z-block", "2", "--z-overlap", "1", "--out", str(out), "--threads", "1"]
    assert main(argv) == 0
    model, _ = load_model(model_path("isbi-membranes"))
    expected = stack_flow(label_stack(model, stack[..., None] / np.float32(255))[1], T=1.0, z_weight=0.5, block=2,
                          overlap=1, start="input")
    probs = tifffile.imread(out / "probabilities.tif")                # (Z, J, H, W)
    assert probs.shape == (3, 2, 24, 20) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, expected.transpose(0, 3, 1, 2), atol=1e-6)
    np.testing.assert_array_equal(tifffile.imread(out / "labels.tif"), expected.argmax(-1))
    assert tifffile.imread(out / "entropy.tif").shape == (3, 24, 20)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["z_flow"]["T"] == 1.0 and metrics["z_flow"]["z_weight"] == 0.5


@pytest.mark.parametrize("case", ["single image", "no model", "overlap > block", "negative weight"])
def test_cli_z_flow_refusals_are_one_line(tmp_path, capsys, case):
    stack = _stack(tmp_path)
    tifffile.imwrite(tmp_path / "one.tif", stack[0], photometric="minisblack")
    src = tmp_path / ("one.tif" if case == "single image" else "stack.tif")
    extra = {"single image": ["--model", "isbi-membranes"], "no model": ["--k", "2"],
             "overlap > block": ["--model", "isbi-membranes", "--z-block", "2", "--z-overlap", "3"],
             "negative weight": ["--model", "isbi-membranes", "--z-weight", "-1"]}[case]
    match = {"single image": "--z-flow needs a stack", "no model": "--z-flow needs --model",
             "overlap > block": "--z-overlap must be <= 2", "negative weight": "--z-weight must be finite and >= 0"}[case]
    capsys.readouterr()
    out = tmp_path / "out"
    assert main(["label", str(src), *extra, "--z-flow", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    assert not out.exists()
