"""``flowlearn reproduce`` end to end, with every command it runs shrunk to a toy size.

The parts run the real commands and parse their real output files; only the sizes passed to the
commands are reduced here (the published sizes take minutes). A second run reuses finished parts.
"""

from __future__ import annotations

import json

from flowlearn.cli import reproduce_parts
from flowlearn.cli.main import main

# option -> toy value, for every command the parts run
TOY = {"--size": "16", "--iters": "2", "--eval-samples": "4000", "--gibbs-samples": "2000",
       "--train-sizes": "8,16", "--seeds": "1", "--images": "16", "--full-images": "16"}


def toy_run(calls):
    real = reproduce_parts._run

    def run(argv):
        argv = [str(a) for a in argv]
        for i, a in enumerate(argv[:-1]):
            if a in TOY:
                argv[i + 1] = TOY[a]
        if argv[0] == "ising":
            argv += ["--iters", "20", "--mf-restarts", "4"]
        calls.append(argv)
        real(argv)

    return run


def test_reproduce_writes_report_with_paper_numbers_and_reuses_parts(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(reproduce_parts, "_run", toy_run(calls))
    out = tmp_path / "rep"
    assert main(["reproduce", "--quick", "--out", str(out)]) == 0
    assert {c[0] for c in calls} == {"learn", "gradcheck", "predict", "ising", "gfe"}
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for text in ("Paper 000", "Paper 001", "Paper 002", "Environment", "wall time"):
        assert text in md and text in html
    # the published numbers stand beside ours
    assert "0.599" in md and "1.974" in md            # paper 001, Table 1
    assert "0.2098" in md and "0.1558" in md          # paper 002, Table 1
    assert "> 99" in md                               # paper 000, Fig. 3a
    summary = json.loads((out / "reproduce.json").read_text())
    assert set(summary["parts"]) == {"learning", "randomized", "encoding"}
    enc = summary["parts"]["encoding"]["tables"][0]
    assert [row[0] for row in enc["rows"]] == [8, 16]
    for row in enc["rows"]:  # BCE means (columns 1, 3, 5) and their stds over seeds (2, 4, 6)
        assert all(0 < row[i] < 1 for i in (1, 3, 5)) and all(row[i] >= 0 for i in (2, 4, 6))
    for name, part in summary["parts"].items():
        for fig, _ in part["figures"]:
            assert (out / name / fig).is_file(), fig
    # a second run reuses every finished part
    calls.clear()
    capsys.readouterr()
    assert main(["reproduce", "--quick", "--out", str(out)]) == 0
    assert calls == []
    assert capsys.readouterr().out.count("finished earlier") == 3
