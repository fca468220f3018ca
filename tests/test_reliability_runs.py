"""Runs that must not mix: checkpoint identity, run directories, surfaced failures, kill-and-resume, torchrun.

Each test reproduces a defect of issue 13 on the code before the change and checks the fix.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from flowlearn.cli.main import main
from flowlearn.engine import RunDirectory
from flowlearn.engine.checkpoint import load_checkpoint, load_weights
from flowlearn.status import Status

pytestmark = pytest.mark.usefixtures("one_thread")


def cli(*argv):
    """``(exit code, stderr)`` of ``flowlearn ARGV`` run in-process."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


@pytest.fixture
def v16(tmp_path):
    code, err = cli("voronoi", "--size", 16, "--seed", 0, "--scenario", "colors", "--out", tmp_path / "v16")
    assert code == 0, err
    return tmp_path / "v16"


# ----------------------------------------------------------------------------- checkpoint identity
def test_learn_resume_of_a_different_problem_is_refused_by_name(tmp_path):
    out = tmp_path / "R"
    assert cli("learn", "--size", 16, "--iters", 3, "--seed", 3, "--out", out)[0] == 0
    code, err = cli("learn", "--size", 16, "--iters", 6, "--seed", 4, "--rho", 0.5, "--resume", "--out", out)
    assert code == 2 and "belongs to a different run (data:" in err and "--overwrite" in err, err
    code, err = cli("learn", "--size", 32, "--iters", 6, "--seed", 3, "--resume", "--out", out)  # shape change
    assert code == 2 and "belongs to a different run (data:" in err, err
    code, err = cli("learn", "--size", 16, "--iters", 6, "--seed", 3, "--optimizer", "rgd", "--resume", "--out", out)
    assert code == 2 and "config.optimizer: 'adam' in the checkpoint, 'rgd' now" in err, err


def test_learn_resume_equals_uninterrupted(tmp_path):
    assert cli("learn", "--size", 16, "--iters", 3, "--seed", 3, "--out", tmp_path / "a")[0] == 0
    assert cli("learn", "--size", 16, "--iters", 6, "--seed", 3, "--resume", "--out", tmp_path / "a")[0] == 0
    assert cli("learn", "--size", 16, "--iters", 6, "--seed", 3, "--out", tmp_path / "b")[0] == 0
    a, b = (np.load(tmp_path / d / "patches_lowrank.npy") for d in "ab")
    np.testing.assert_array_equal(a, b)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["resumed"] and "patches_lowrank.npy" in manifest["outputs"]


def test_ising_resume_with_another_model_is_refused(tmp_path):
    small = ["--rows", 2, "--cols", 4, "--iters", 20, "--eval-samples", 2000, "--gibbs-samples", 2000,
             "--mf-restarts", 2, "--batch-size", 16, "--out", tmp_path / "IC"]
    assert cli("ising", *small)[0] == 0
    code, err = cli("ising", *small, "--coupling", 50)
    assert code == 2 and "pass --resume to continue it, --overwrite to replace it" in err, err
    code, err = cli("ising", *small, "--coupling", 50, "--resume")
    assert code == 2 and "belongs to a different run" in err and "model:" in err, err
    code, err = cli("ising", *small, "--coupling", 50, "--overwrite")
    assert code == 0, err
    table = json.loads((tmp_path / "IC" / "table.json").read_text())
    assert table["config"]["coupling"] == 50 and table["details"]["randomized_af"]["resumed_from"] == 0


def test_truncated_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    from flowlearn.data import make_voronoi
    from flowlearn.learning import LearningProblem, WeightLearner
    from flowlearn.linearized import LowRank

    v = make_voronoi(16, scenario="boundary", seed=0)
    problem = LearningProblem.from_image(v.image, v.labels, v.prototypes, rho=0.1, T=1.0)
    ck = tmp_path / "ck.pt"
    learner = WeightLearner(LowRank(), optimizer="adam", lr=0.05, iters=2, show_progress=False)
    learner.fit(problem, checkpoint=ck)
    ck.write_bytes(ck.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"ck.pt' is truncated, corrupt or not a flowlearn file"):
        learner.fit(problem, checkpoint=ck, resume=True)
    torch.save({"weights": torch.ones(2)}, ck)
    with pytest.raises(ValueError, match="was not written by this version of flowlearn"):
        learner.fit(problem, checkpoint=ck, resume=True)


def test_checkpoints_load_with_weights_only(tmp_path):
    out = tmp_path / "g"
    code, err = cli("gfe", "train", "--train-size", 16, "--val-size", 16, "--batch-size", 8, "--eval-every", 100,
                    "--epochs", 1, "--out", out)
    assert code == 0, err
    for name in ("checkpoint.pt", "model.pt"):
        state = torch.load(out / name, weights_only=True)
        assert isinstance(state, dict)
    assert "state_dict" in load_weights(out / "model.pt", keys=("state_dict", "config"))
    assert load_checkpoint(out / "checkpoint.pt")["iteration"] == 2


# ----------------------------------------------------------------------------- run directories
def test_concurrent_writer_fails_clearly(tmp_path, v16):
    out = tmp_path / "o"
    with RunDirectory(out, command="label"):
        code, err = cli("label", v16 / "image.npy", "--prototypes", v16 / "prototypes.npy", "--out", out)
    assert code == 2 and "is in use by flowlearn label (pid" in err, err
    assert sorted(p.name for p in out.iterdir()) == [".flowlearn.lock", "manifest.json"]


def test_earlier_outputs_are_refused_never_mixed_and_overwrite_replaces(tmp_path, v16):
    out = tmp_path / "o"
    base = ["label", v16 / "image.npy", "--prototypes", v16 / "prototypes.npy", "--out", out]
    assert cli(*base)[0] == 0
    first = json.loads((out / "metrics.json").read_text())
    code, err = cli(*base, "--rho", 0.5)
    assert code == 2 and "holds the outputs of an earlier `flowlearn label` run" in err, err
    assert json.loads((out / "metrics.json").read_text()) == first
    assert cli(*base, "--rho", 0.5, "--overwrite")[0] == 0
    assert json.loads((out / "metrics.json").read_text())["rho"] == 0.5
    (out / "stray.txt").write_text("not ours")
    code, err = cli(*base, "--overwrite")
    assert code == 2 and "files that its earlier run did not write (stray.txt)" in err, err
    code, err = cli("learn", "--size", 16, "--iters", 1, "--resume", "--out", out)
    assert code == 2 and "cannot continue" in err or "did not write" in err, err


def test_outputs_follow_the_umask(tmp_path, v16):
    old = os.umask(0o022)
    try:
        assert cli("label", v16 / "image.npy", "--prototypes", v16 / "prototypes.npy", "--out", tmp_path / "o")[0] == 0
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "o" / "labels.npy").stat().st_mode)
    assert mode == 0o644, oct(mode)


# ----------------------------------------------------------------------------- failures surfaced
def test_unconverged_or_undecided_flow_exits_3_and_writes_nothing(tmp_path, v16):
    base = ["label", v16 / "image.npy", "--prototypes", v16 / "prototypes.npy", "--truth", v16 / "labels.npy"]
    code, err = cli(*base, "--flow", "linearized", "--T", "1e6", "--out", tmp_path / "o")
    assert code == 3 and "did not produce a labeling: status" in err and "--T" in err, err
    assert not (tmp_path / "o").exists()
    code, err = cli(*base, "--rho", "1e300", "--out", tmp_path / "o")
    assert code == 3 and "status undecided" in err and "lower rho" in err, err
    code, err = cli(*base, "--rho", "1e300", "--allow-unconverged", "--out", tmp_path / "o")
    assert code == 0, err
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["status"] == "undecided" and metrics["converged"] is False
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["status"] == "undecided"


def test_label_api_raises_and_result_statuses():
    from flowlearn.labeling import label

    img = np.zeros((8, 8, 1))
    img[:, 4:] = 1
    with pytest.raises(ValueError, match="status undecided"):
        label(img, [[0.0], [1.0]], rho=1e300)
    res = label(img, [[0.0], [1.0]], rho=1e300, throw=False)
    assert res.status is Status.UNDECIDED and not res.status.ok
    assert label(img, [[0.0], [1.0]]).status.ok


def test_flow_results_keep_the_data_dtype():
    from flowlearn.graphs import GridWeights
    from flowlearn.labeling import AssignmentFlow, LinearizedAssignmentFlow

    D = torch.rand(32 * 32, 3)
    omega = GridWeights(32, 32)  # float32 patches
    for flow in (AssignmentFlow(omega, rho=1.0, max_steps=5), LinearizedAssignmentFlow(omega, rho=1.0, T=1.0)):
        assert flow.run(D.double()).assignment.dtype == torch.float64
        assert flow.run(D.float()).assignment.dtype == torch.float32


# ----------------------------------------------------------------------------- exceptions at the boundary
def test_internal_bug_keeps_its_traceback_bad_input_exits_2(monkeypatch):
    import flowlearn.cli.voronoi as vor

    def buggy(*a, **k):
        raise RuntimeError("a library bug")

    monkeypatch.setattr(vor, "make_voronoi", buggy)
    with pytest.raises(RuntimeError, match="a library bug"):
        main(["voronoi", "--size", "16", "--out", "never"])
    monkeypatch.setattr(vor, "make_voronoi", lambda *a, **k: int("x"))  # a ValueError that is not bad input
    with pytest.raises(ValueError, match="invalid literal"):
        main(["voronoi", "--size", "16", "--out", "never"])
    monkeypatch.undo()
    assert cli("voronoi", "--size", 0, "--out", "never")[0] == 2
    with pytest.raises(ValueError, match="size must be >= 8"):
        main(["--debug", "voronoi", "--size", "0", "--out", "never"])


# ----------------------------------------------------------------------------- kill and resume
class _KillAt:
    """A callback that raises KeyboardInterrupt after iteration ``k`` (like Ctrl-C)."""

    def __init__(self, k):
        self.k = k

    def __call__(self, it, record):
        if it == self.k:
            raise KeyboardInterrupt


def _assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_kill_and_resume_with_time_based_checkpoints_weight_learning(tmp_path):
    from flowlearn.data import make_voronoi
    from flowlearn.engine import RunInterrupted
    from flowlearn.learning import LearningProblem, WeightLearner
    from flowlearn.linearized import LowRank

    v = make_voronoi(16, scenario="colors", seed=1)
    problem = LearningProblem.from_image(v.image, v.labels, v.prototypes, rho=0.1, T=1.0)
    kw = dict(optimizer="adam", lr=0.05, iters=6, checkpoint_every=10**6, checkpoint_seconds=1e-9,
              show_progress=False)
    full = WeightLearner(LowRank(), **kw).fit(problem)
    ck = tmp_path / "ck.pt"
    with pytest.raises(RunInterrupted, match=r"holds iteration 3 of 6; run the same command with --resume"):
        WeightLearner(LowRank(), **kw).fit(problem, checkpoint=ck, callback=_KillAt(2))
    rest = WeightLearner(LowRank(), **kw).fit(problem, checkpoint=ck, resume=True)
    assert rest.stats["resumed_from"] == 3 and rest.status is Status.COMPLETED
    assert torch.equal(rest.patches, full.patches)
    assert [h["loss"] for h in rest.history] == [h["loss"] for h in full.history]


def test_kill_and_resume_with_time_based_checkpoints_predictor(tmp_path):
    from flowlearn.data import make_voronoi
    from flowlearn.learning.predictor import (
        PatchPredictor,
        PredictorTrainer,
        clean_windows,
        make_sample,
    )

    vs = [make_voronoi(16, scenario="boundary", seed=s) for s in (0, 1)]
    samples = [make_sample(v.image, v.labels, vs[0].prototypes, rho=0.1, T=1.0) for v in vs]
    wins = clean_windows(vs[0].clean, vs[0].labels)

    def fresh():
        return PatchPredictor(6, feature_dim=samples[0].features.shape[1]).double().initialize(*wins)

    kw = dict(lr=0.05, iters=5, checkpoint_every=10**6, checkpoint_seconds=1e-9, show_progress=False)
    a = fresh()
    full = PredictorTrainer(**kw).fit(a, samples)
    ck = tmp_path / "ck.pt"
    with pytest.raises(KeyboardInterrupt):
        PredictorTrainer(**kw).fit(fresh(), samples, checkpoint=ck, callback=_KillAt(1))
    b = fresh()
    rest = PredictorTrainer(**kw).fit(b, samples, checkpoint=ck, resume=True)
    assert rest.stats["resumed_from"] == 2
    _assert_same_state(a.state_dict(), b.state_dict())
    assert [h["loss"] for h in rest.history] == [h["loss"] for h in full.history]


def test_kill_and_resume_with_time_based_checkpoints_randomized(tmp_path):
    from flowlearn.pgm import ising_grid
    from flowlearn.randomized import RandomizedAssignmentFlow, TrainingConfig, train_randomized_flow

    model = ising_grid(2, 3, field=2.0, coupling=1.5)

    def fresh():
        return RandomizedAssignmentFlow(6, 2, init_rank=2, init_noise=0.5, initial_logits=-0.5 * model.unary)

    cfg = TrainingConfig(iterations=6, batch_size=16, seed=2, checkpoint_every=10**6, checkpoint_seconds=1e-9,
                         entropy_estimator="score", random_roundings=2, data_shards=2)
    a = fresh()
    full = train_randomized_flow(a, model, cfg, show_progress=False)
    ck = tmp_path / "ck.pt"
    with pytest.raises(KeyboardInterrupt):
        train_randomized_flow(fresh(), model, cfg, checkpoint_path=ck, callback=_KillAt(3), show_progress=False)
    b = fresh()
    rest = train_randomized_flow(b, model, cfg, checkpoint_path=ck, show_progress=False, resume=True)
    assert rest.stats["resumed_from"] == 4
    _assert_same_state(a.state_dict(), b.state_dict())
    assert rest.series("objective") == full.series("objective")


def test_kill_and_resume_with_time_based_checkpoints_gfe(tmp_path):
    from flowlearn.encoding import TrainConfig, Trainer, load_dataset, training_subset

    d = load_dataset("digits", dtype=torch.float64)
    idx = training_subset(d, 32, 0)
    cfg = TrainConfig(epochs=1, batch_size=8, eval_every=2, checkpoint_every=10**6, checkpoint_seconds=1e-9, seed=1)
    full = Trainer(cfg).fit(d, idx)

    class Killed(Trainer):
        def _optimizer(self, params):
            opt = super()._optimizer(params)
            step, calls = opt.step, [0]

            def killing_step(*a, **k):
                calls[0] += 1
                if calls[0] == 3:
                    raise KeyboardInterrupt
                return step(*a, **k)

            opt.step = killing_step
            return opt

    with pytest.raises(KeyboardInterrupt):
        Killed(cfg).fit(d, idx, out_dir=tmp_path)
    rest = Trainer(cfg).fit(d, idx, out_dir=tmp_path, resume=True)
    assert rest.stats["resumed_from"] == 2
    _assert_same_state(full.module.state_dict(), rest.module.state_dict())
    assert [h["val_bce"] for h in rest.history] == [h["val_bce"] for h in full.history]


# ----------------------------------------------------------------------------- torchrun
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(argv, out: Path, nproc: int = 2):
    """``flowlearn ARGV`` in ``nproc`` processes under torchrun (``nproc=1``: one plain process)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", FLOWLEARN_NO_PROGRESS="1")
    launch = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
               "127.0.0.1", "--master_port", str(_free_port())] if nproc > 1 else [sys.executable])
    cmd = [*launch, "-m", "flowlearn", *map(str, argv), "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_torchrun_two_processes_equal_one_process_randomized(tmp_path):
    argv = ["ising", "--rows", 2, "--cols", 3, "--iters", 8, "--batch-size", 16, "--data-shards", 2,
            "--eval-samples", 1000, "--gibbs-samples", 1000, "--mf-restarts", 2, "--dtype", "float64",
            "--threads", 1]
    _torchrun(argv, tmp_path / "two")
    assert cli(*argv, "--out", tmp_path / "one")[0] == 0
    two = load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    one = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    for k, v in one["task"]["flow"].items():
        assert torch.allclose(two["task"]["flow"][k], v, rtol=1e-10, atol=1e-12), k
    assert [h["objective"] for h in two["history"]] == pytest.approx([h["objective"] for h in one["history"]],
                                                                      rel=1e-9)


def test_torchrun_two_processes_equal_one_process_predictor_and_learn(tmp_path):
    argv = ["predict", "--size", 16, "--iters", 3, "--train-seeds", 0, 1, "--test-seeds", 5, "--num-prototypes", 5,
            "--T", 1.0]
    _torchrun(argv, tmp_path / "two")
    _torchrun(argv, tmp_path / "one", nproc=1)
    two = load_weights(tmp_path / "two" / "predictor.pt")["state"]
    one = load_weights(tmp_path / "one" / "predictor.pt")["state"]
    for k in one:
        assert two[k].dtype == one[k].dtype and torch.allclose(two[k], one[k], rtol=1e-6, atol=1e-9), k
    learn = ["learn", "--size", 16, "--iters", 3]
    _torchrun(learn, tmp_path / "ltwo")
    _torchrun(learn, tmp_path / "lone", nproc=1)
    np.testing.assert_array_equal(np.load(tmp_path / "ltwo" / "patches_lowrank.npy"),
                                  np.load(tmp_path / "lone" / "patches_lowrank.npy"))


def test_gfe_data_outside_unit_interval_is_refused():
    from flowlearn.encoding import (
        GradientFlowEncoder,
        TrainConfig,
        Trainer,
        load_dataset,
        make_decoder,
    )

    gfe = GradientFlowEncoder(make_decoder(16, 3, dtype=torch.float64), 3)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 1\], got values in \[0, 255\]; the BCE loss"):
        gfe.encode(torch.linspace(0, 255, 32, dtype=torch.float64).reshape(2, 16))
    d = load_dataset("digits", dtype=torch.float64)
    d.train = d.train * 16
    with pytest.raises(ValueError, match=r"data.train must lie in \[0, 1\]"):
        Trainer(TrainConfig(epochs=1)).fit(d)
