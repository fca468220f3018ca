"""``flowlearn reproduce`` end to end, with every experiment it runs shrunk to a toy size.

The parts call the real experiments; only the sizes of the ``--quick`` preset are reduced here (the
published sizes take minutes). A second run reuses finished parts; changed settings rerun a part.
"""

from __future__ import annotations

import json
from dataclasses import replace

from flowlearn.cli.main import main
from flowlearn.experiments import reproduce as experiment
from flowlearn.experiments.table1 import IsingExperimentConfig

TOY = experiment.ReproduceConfig(
    learn_size=16, learn_iters=2, gradcheck_size=16, predict_size=16, predict_iters=2,
    ising=IsingExperimentConfig(eval_samples=4000, gibbs_samples=2000, iterations=20, mean_field_restarts=4),
    gfe_sizes=(8, 16), gfe_seeds=1, gfe_images=16)


def _count_parts(monkeypatch, calls):
    for name, part in list(experiment.PARTS.items()):
        def counted(out, config, _name=name, _part=part):
            calls.append(_name)
            return _part(out, config)
        monkeypatch.setitem(experiment.PARTS, name, counted)


def test_reproduce_writes_report_with_paper_numbers_and_reuses_parts(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(experiment, "QUICK", TOY)
    _count_parts(monkeypatch, calls)
    out = tmp_path / "rep"
    assert main(["reproduce", "--quick", "--out", str(out)]) == 0
    assert calls == ["learning", "randomized", "encoding"]
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
    fig2 = summary["parts"]["learning"]["tables"][0]
    assert [row[0] for row in fig2["rows"]] == ["lowrank", "autodiff-euler", "autodiff-expint"]
    assert all(0 <= row[2] <= 100 for row in fig2["rows"])
    for name, part in summary["parts"].items():
        assert part["figures"], name
        for fig, _ in part["figures"]:
            assert (out / name / fig).is_file(), fig
    # a second run reuses every finished part
    calls.clear()
    capsys.readouterr()
    assert main(["reproduce", "--quick", "--out", str(out)]) == 0
    assert calls == []
    assert capsys.readouterr().out.count("finished earlier") == 3
    # changed settings of one part rerun that part only
    monkeypatch.setattr(experiment, "QUICK", replace(TOY, gfe_sizes=(8,)))
    assert main(["reproduce", "--quick", "--parts", "learning", "encoding", "--out", str(out)]) == 0
    assert calls == ["encoding"]
