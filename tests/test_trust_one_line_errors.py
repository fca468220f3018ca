"""Faults of the environment and hostile files end in one line, exit code 2, and nothing half-written.

A full disk (``ENOSPC``), ``--out`` removed during the run, a 300-character ``--out``, a 192-byte ``.npy`` whose
header declares 3.6 TiB, a PNG decompression bomb, an earlier run in the ``--out`` of ``label`` (which has no
``--resume``).  The rows of ``docs/reliability.md`` for these cases come from ``tests/test_reliability_bad_inputs.py``;
this file checks what a table row cannot show: the manifest's status, the temporary files, what was computed.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

import flowlearn.io
from flowlearn._checks import UserInputError, UserOSError
from flowlearn.cli import label as label_cli
from flowlearn.cli.main import main
from flowlearn.data import read_image
from flowlearn.engine import RunDirectory


def _cli(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in argv])
    return code, err.getvalue()


def _image(tmp_path) -> Path:
    np.save(tmp_path / "image.npy", np.random.default_rng(0).random((12, 12)))
    return tmp_path / "image.npy"


def _enospc(spare=()):
    real = flowlearn.io.atomic_write

    @contextlib.contextmanager
    def atomic_write(path, mode="wb"):
        if Path(path).name not in spare:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        with real(path, mode) as fh:
            yield fh

    return atomic_write


@pytest.mark.parametrize("spare", [("manifest.json",), ("manifest.json", "prototypes.npy", "labels.npy")],
                         ids=["first output", "third output"])
def test_full_disk_is_one_line_and_the_manifest_says_failed(tmp_path, spare):
    out = tmp_path / "out"
    with mock.patch.object(flowlearn.io, "atomic_write", _enospc(spare)):
        code, err = _cli(["label", _image(tmp_path), "--k", "2", "--out", out])
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "No space left on device (ENOSPC)" in err and str(out) in err, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "No space left on device" in manifest["error"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")], "a half-written file was left"


def test_full_disk_for_the_manifest_too_is_one_line_and_never_completed(tmp_path):
    out = tmp_path / "out"
    real = flowlearn.io.atomic_write
    calls = []

    @contextlib.contextmanager
    def atomic_write(path, mode="wb"):  # the start manifest gets written, then the disk is full
        calls.append(Path(path).name)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        with real(path, mode) as fh:
            yield fh

    with mock.patch.object(flowlearn.io, "atomic_write", atomic_write):
        code, err = _cli(["label", _image(tmp_path), "--k", "2", "--out", out])
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "prototypes.npy': No space left on device" in err, err   # the run's error, not the manifest's
    assert json.loads((out / "manifest.json").read_text())["status"] != "completed"


def test_atomic_write_turns_enospc_into_one_line_and_leaves_no_temporary(tmp_path):
    full = mock.patch.object(os, "fsync", side_effect=OSError(errno.ENOSPC, "No space left on device"))
    with full, pytest.raises(UserOSError, match=r"cannot write '.*a\.npy': No space left on device \(ENOSPC\)") as info:
        flowlearn.io.save_npy(tmp_path / "a.npy", np.zeros(3))
    assert isinstance(info.value, OSError) and isinstance(info.value, ValueError)
    assert list(tmp_path.iterdir()) == []


def test_out_removed_during_the_run_is_one_line(tmp_path):
    out = tmp_path / "out"
    real = label_cli.write_labeling

    def write_labeling(*args, **kwargs):
        import shutil

        shutil.rmtree(out)
        return real(*args, **kwargs)

    with mock.patch.object(label_cli, "write_labeling", write_labeling):
        code, err = _cli(["label", _image(tmp_path), "--k", "2", "--out", out])
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "no longer exists (removed during the run?)" in err, err
    assert not out.exists()


def test_a_300_character_out_writes_nothing(tmp_path):
    long = tmp_path / ("a" * 300) / "run"
    code, err = _cli(["label", _image(tmp_path), "--k", "2", "--out", long])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "File name too long (ENAMETOOLONG)" in err, err
    with pytest.raises(UserInputError, match="cannot be used: File name too long"):
        RunDirectory(long, command="label").__enter__()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.npy"]


def test_label_refuses_an_earlier_run_before_computing_and_without_resume(tmp_path):
    out = tmp_path / "out"
    assert _cli(["label", _image(tmp_path), "--k", "2", "--out", out])[0] == 0
    computed = mock.Mock(side_effect=AssertionError("computed before checking --out"))
    with mock.patch.object(label_cli, "label", computed), mock.patch.object(label_cli, "kmeans_prototypes", computed):
        code, err = _cli(["label", tmp_path / "image.npy", "--k", "3", "--out", out])
    assert code == 2 and "--resume" not in err and "pass --overwrite to replace it" in err, err
    computed.assert_not_called()


def test_npy_header_is_checked_against_the_memory_guard_before_loading(tmp_path, monkeypatch):
    np.save(tmp_path / "big.npy", np.zeros((200, 200)))          # 320 kB, consistent with its header
    monkeypatch.setenv("FLOWLEARN_MEMORY_LIMIT", "100000")
    load = mock.Mock(side_effect=AssertionError("np.load ran"))
    with mock.patch.object(np, "load", load):
        code, err = _cli(["label", tmp_path / "big.npy", "--k", "2", "--out", tmp_path / "out"])
    assert code == 2 and "needs about" in err and "(200, 200)" in err and "100 KB available" in err, err
    load.assert_not_called()


def test_a_decompression_bomb_is_refused_before_decoding_without_a_warning(tmp_path):
    from tests.test_reliability_bad_inputs import _png

    (tmp_path / "bomb.png").write_bytes(_png(10000, 10000))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(UserInputError, match=r"100,000,000 pixels, more than the bound of 89,478,485"):
            read_image(tmp_path / "bomb.png")
    assert not [w for w in seen if "DecompressionBomb" in type(w.message).__name__], seen
