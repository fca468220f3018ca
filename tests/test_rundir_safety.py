"""A run directory is only ever written and cleaned inside itself; links are never followed out of it.

Each case is a hostile or unlucky directory: a manifest crafted to list files outside ``--out``, a lock
file planted as a link, a symlinked subdirectory, a manifest that is not an object, stale temporary
files of a killed write.  The decoy files outside the directory must survive every case.
"""

from __future__ import annotations

import json
import os

import pytest

from flowlearn.cli.main import main
from flowlearn.engine import RunDirectory


def _run(tmp_path, name="run", **kw):
    with RunDirectory(tmp_path / name, command="label", **kw) as rd:
        (rd.path / "labels.png").write_bytes(b"png")
        (rd.path / "sub").mkdir(exist_ok=True)
        (rd.path / "sub" / "x.txt").write_text("x")
    return tmp_path / name


def _decoys(tmp_path):
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "victim.txt").write_text("keep me")
    (decoy / "victim_dir").mkdir()
    (decoy / "victim_dir" / "inner.txt").write_text("keep me too")
    return decoy


@pytest.mark.parametrize("entry", ["../decoy/victim.txt", "ABS/victim.txt", "ABS/victim_dir/", "../decoy/victim_dir/",
                                   "..", "sub/../../decoy/victim.txt", ".", ""])
def test_overwrite_never_deletes_outside_the_directory(tmp_path, entry):
    out = _run(tmp_path)
    decoy = _decoys(tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["outputs"].append(entry.replace("ABS", str(decoy)))
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="lists outputs outside the directory"):
        RunDirectory(out, command="label", overwrite=True).__enter__()
    assert (decoy / "victim.txt").read_text() == "keep me"
    assert (decoy / "victim_dir" / "inner.txt").read_text() == "keep me too"
    assert (out / "labels.png").exists(), "nothing is deleted before every entry is checked"


def test_crafted_manifest_through_the_cli_leaves_the_decoys(tmp_path, capsys):
    import numpy as np

    out = tmp_path / "run"
    np.save(tmp_path / "image.npy", np.random.default_rng(0).random((12, 12, 3)))
    assert main(["label", str(tmp_path / "image.npy"), "--k", "3", "--out", str(out)]) == 0
    decoy = _decoys(tmp_path)
    m = json.loads((out / "manifest.json").read_text())
    m["outputs"] += ["../decoy/victim.txt", str(decoy / "victim_dir") + "/"]
    (out / "manifest.json").write_text(json.dumps(m))
    capsys.readouterr()
    assert main(["label", str(tmp_path / "image.npy"), "--k", "3", "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "outside the directory" in err
    assert (decoy / "victim.txt").exists() and (decoy / "victim_dir" / "inner.txt").exists()


@pytest.mark.parametrize("dangling", [False, True])
def test_a_planted_lock_link_is_refused_and_its_target_untouched(tmp_path, dangling):
    out = tmp_path / "o"
    out.mkdir()
    target = tmp_path / "victim2.txt"
    if not dangling:
        target.write_text("precious")
    os.symlink(target, out / ".flowlearn.lock")
    with pytest.raises(ValueError, match="lock file .flowlearn.lock that is not a regular file"):
        RunDirectory(out, command="label").__enter__()
    if dangling:
        assert not target.exists(), "a dangling link must not create its target"
    else:
        assert target.read_text() == "precious"


def test_overwrite_removes_a_symlinked_subdirectory_as_a_link(tmp_path):
    out = _run(tmp_path)
    decoy = _decoys(tmp_path)
    os.symlink(decoy / "victim_dir", out / "linked")
    m = json.loads((out / "manifest.json").read_text())
    m["outputs"].append("linked/")
    m["status"] = "failed"
    (out / "manifest.json").write_text(json.dumps(m))
    with RunDirectory(out, command="label", overwrite=True):
        pass
    assert not os.path.lexists(out / "linked") and not (out / "sub").exists()
    assert (decoy / "victim_dir" / "inner.txt").read_text() == "keep me too"


@pytest.mark.parametrize("content, match", [
    ("[1, 2]", "not a flowlearn manifest"),
    ('{"outputs": null}', "not a flowlearn manifest"),
    ('{"outputs": [1]}', "outside the directory"),
    ("{", "unreadable manifest.json"),
])
def test_malformed_manifests_are_one_line_errors(tmp_path, content, match):
    out = tmp_path / "run"
    out.mkdir()
    (out / "manifest.json").write_text(content)
    (out / "labels.png").write_bytes(b"png")
    with pytest.raises(ValueError, match=match):
        RunDirectory(out, command="label", overwrite=True).__enter__()
    assert (out / "labels.png").exists()


def test_stale_temporaries_of_killed_writes_are_removed(tmp_path):
    out = _run(tmp_path)
    stale = out / ".labels.png.abc123.tmp"
    stale.write_bytes(b"half")
    with RunDirectory(out, command="label", overwrite=True):
        pass
    assert not stale.exists()
    out2 = _run(tmp_path, "run2")
    stale2 = out2 / ".checkpoint.pt.x.tmp"
    stale2.write_bytes(b"half")
    with RunDirectory(out2, command="label", resume=True) as rd:
        assert rd.resumed
    assert not stale2.exists()


def test_check_refuses_early_and_changes_nothing(tmp_path):
    """``RunDirectory.check`` (what commands call before computing) refuses what ``__enter__`` would refuse, but
    locks, creates and deletes nothing -- even with ``overwrite=True``; a command without ``--resume`` is never
    told to pass it."""
    out = _run(tmp_path)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ValueError, match=r"does not resume: pass --overwrite to replace it") as info:
        RunDirectory(out, command="label", resumable=False).check()
    assert "--resume" not in str(info.value)
    with pytest.raises(ValueError, match=r"pass --resume to continue it, --overwrite"):
        RunDirectory(out, command="learn").check()
    RunDirectory(out, command="label", overwrite=True).check()
    RunDirectory(tmp_path / "new", command="label").check()
    assert sorted(p.name for p in out.iterdir()) == before and not (tmp_path / "new").exists()


def test_a_run_whose_directory_disappears_reports_its_own_error(tmp_path):
    import shutil

    with pytest.raises(FileNotFoundError, match="gone"), RunDirectory(tmp_path / "run", command="label"):
        shutil.rmtree(tmp_path / "run")
        raise FileNotFoundError("gone")   # __exit__ can write no manifest and must not replace this error


def test_check_names_the_live_holder_of_the_directory(tmp_path):
    held = RunDirectory(tmp_path / "run", command="label")
    with held, pytest.raises(ValueError, match=r"is in use by flowlearn label \(pid"):
        RunDirectory(tmp_path / "run", command="label", resumable=False).check()
    RunDirectory(tmp_path / "run", command="label", overwrite=True).check()   # released: replaceable
