"""The training engine on its own: the loop, checkpoint identity, run directories, statuses."""

from __future__ import annotations

import json

import pytest
import torch

from flowlearn.engine import CheckpointPolicy, RunDirectory, RunInterrupted, run_steps
from flowlearn.engine.checkpoint import describe_differences, fingerprint, load_checkpoint, save_checkpoint
from flowlearn.status import Status


class Counter:
    """A toy trainer: x <- x + step, with a generator drawing the step."""

    def __init__(self, seed=0):
        self.x = torch.zeros(3, dtype=torch.float64)
        self.g = torch.Generator().manual_seed(seed)

    def step(self, it):
        self.x += torch.rand(3, generator=self.g, dtype=torch.float64)
        return {"loss": float(self.x.sum())}

    def state_dict(self):
        return {"x": self.x.clone(), "g": self.g.get_state()}

    def load_state_dict(self, state):
        self.x.copy_(state["x"])
        self.g.set_state(state["g"])


def test_every_status_has_a_message_and_compares_to_its_value():
    for s in Status:
        assert isinstance(s.message, str) and len(s.message) > 10 and isinstance(s.ok, bool)
        assert s == s.value and str(s) == s.value and Status(s.value) is s
    assert json.dumps({"s": Status.MAX_SUBSTEPS}) == '{"s": "max_substeps"}'


def test_fingerprint_and_differences():
    a = torch.arange(4.0, dtype=torch.float32)
    assert fingerprint(a, 1) == fingerprint(a.clone(), 1)
    assert fingerprint(a) != fingerprint(a.double()) and fingerprint(a) != fingerprint(a + 1e-7)
    diffs = describe_differences({"config": {"lr": 0.1, "m": 10}, "data": "x"}, {"config": {"lr": 0.2, "m": 10}})
    assert diffs == ["config.lr: 0.1 in the checkpoint, 0.2 now", "data: 'x' in the checkpoint, '<absent>' now"]


def test_loop_records_checkpoints_and_resumes_bit_for_bit(tmp_path):
    ck = tmp_path / "ck.pt"
    full = Counter()
    ref = run_steps(full.step, iterations=7, state=full, identity={"id": 1}, show_progress=False)
    assert ref.status is Status.COMPLETED and [h["iteration"] for h in ref.history] == list(range(7))
    assert ref.stats["iterations"] == 7 and ref.stats["resumed_from"] == 0 and ref.stats["world_size"] == 1
    part = Counter()
    res = run_steps(part.step, iterations=7, state=part, identity={"id": 1}, stop_after=3, show_progress=False,
                    checkpoint=CheckpointPolicy(ck, every_steps=2, every_seconds=0))
    assert res.status is Status.INTERRUPTED and load_checkpoint(ck, {"id": 1})["iteration"] == 3
    rest = Counter()
    done = run_steps(rest.step, iterations=7, state=rest, identity={"id": 1}, show_progress=False,
                     checkpoint=CheckpointPolicy(ck, every_steps=2, every_seconds=0, resume=True))
    assert done.stats["resumed_from"] == 3 and torch.equal(rest.x, full.x)
    assert [h["loss"] for h in done.history] == [h["loss"] for h in ref.history]
    with pytest.raises(ValueError, match=r"belongs to a different run \(id: 1 in the checkpoint, 2 now\)"):
        run_steps(Counter().step, iterations=7, state=Counter(), identity={"id": 2},
                  checkpoint=CheckpointPolicy(ck, resume=True), show_progress=False)


def test_interrupt_names_the_checkpoint_and_the_resume(tmp_path):
    c = Counter()

    def step(it):
        if it == 4:
            raise KeyboardInterrupt
        return c.step(it)

    with pytest.raises(RunInterrupted, match=r"interrupted at iteration 4 of 9: the checkpoint .* holds iteration "
                                             r"4 of 9; run the same command with --resume"):
        run_steps(step, iterations=9, state=c, identity={}, show_progress=False,
                  checkpoint=CheckpointPolicy(tmp_path / "ck.pt", every_steps=1))


def test_policy_validation():
    with pytest.raises(ValueError, match="every_steps must be >= 1"):
        CheckpointPolicy(every_steps=0)
    with pytest.raises(ValueError, match="every_seconds must be finite and >= 0"):
        CheckpointPolicy(every_seconds=-1)
    with pytest.raises(ValueError, match="iterations must be >= 0"):
        run_steps(lambda i: {}, iterations=-1, state=Counter(), identity={})


def test_run_directory_rules(tmp_path):
    out = tmp_path / "run"
    with RunDirectory(out, command="learn", config={"lr": 1}) as run:
        (run.path / "a.json").write_text("{}")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["outputs"] == ["a.json"] and manifest["end"]
    with pytest.raises(ValueError, match="pass --resume to continue it, --overwrite to replace it"):
        RunDirectory(out, command="learn").__enter__()
    with pytest.raises(ValueError, match="which `flowlearn label --resume` cannot continue"):
        RunDirectory(out, command="label", resume=True).__enter__()
    with pytest.raises(ValueError, match="exclude each other"):
        RunDirectory(out, command="learn", resume=True, overwrite=True)
    with RunDirectory(out, command="learn", resume=True) as run:
        assert run.resumed
    with RunDirectory(out, command="label", overwrite=True):
        assert not (out / "a.json").exists()
    with pytest.raises(RuntimeError):
        with RunDirectory(out, command="label", overwrite=True):
            raise RuntimeError("boom")
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"


def test_killed_writer_leaves_a_resumable_directory(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"command": "ising", "status": "running", "outputs": []}))
    (out / "checkpoint.pt").write_bytes(b"")
    with RunDirectory(out, command="ising", resume=True) as run:
        assert run.resumed


def test_checkpoint_files_load_with_weights_only(tmp_path):
    save_checkpoint(tmp_path / "ck.pt", {"x": torch.ones(2), "h": [{"loss": 1.0}]}, {"config": {"a": 1}})
    blob = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert blob["identity"] == {"config": {"a": 1}} and torch.equal(blob["state"]["x"], torch.ones(2))


def test_cosine_factor_endpoints_midpoint_and_after_the_end():
    import math

    from flowlearn.engine.schedule import cosine_factor

    assert cosine_factor(0, 10, 0.1) == 1.0
    assert math.isclose(cosine_factor(5, 10, 0.1), 0.55, rel_tol=1e-12)
    assert math.isclose(cosine_factor(10, 10, 0.1), 0.1, rel_tol=1e-12)
    assert cosine_factor(25, 10, 0.1) == cosine_factor(10, 10, 0.1)      # constant after the end
    assert math.isclose(cosine_factor(3, 0, 0.2), 0.2, rel_tol=1e-12)    # total 0 behaves as 1
