"""The GFE table scripts of benchmarks/: summary of cell records and the markdown rows."""

import json

from benchmarks import gfe_table, gfe_table_summary


def _cell(path, size, seed, model, val, mixed=None, refined=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"size": size, "seed": seed, "model": model, "val_bce": val,
                                "mixed_val_bce": mixed, "refined_val_bce": refined, "history": [], "stats": {}}))


def test_summary_groups_parts_and_seeds(tmp_path):
    cells = tmp_path / "run" / "seen-rmsprop" / "cells"
    for seed, (ae, gfe, ad) in enumerate([(0.26, 0.24, 0.25), (0.28, 0.24, 0.25)]):
        _cell(cells / f"seen_N480_s{seed}_ae.json", 480, seed, "ae", ae, mixed=ae - 0.01, refined=ae - 0.005)
        _cell(cells / f"seen_N480_s{seed}_gfe.json", 480, seed, "gfe", gfe)
        _cell(cells / f"seen_N480_s{seed}_ad.json", 480, seed, "auto-decoder", ad)
    assert gfe_table_summary.main([str(tmp_path / "run"), "--out", str(tmp_path / "all")]) == 0
    table = json.loads((tmp_path / "all" / "table.json").read_text())
    row = table["parts"]["seen-rmsprop"]["rows"]["480"]
    assert row["AE"]["n_seeds"] == 2 and abs(row["AE"]["mean"] - 0.27) < 1e-12
    assert abs(row["gfe_vs_ae_relative"] - (0.24 / 0.27 - 1)) < 1e-12
    text = (tmp_path / "all" / "table.md").read_text()
    # auto-decoder share of the GFE gain: (0.27 - 0.25) / (0.27 - 0.24) = 67 %; paper row for 480
    assert "| seen-rmsprop | 480 |" in text and "67 %" in text and "-11.1 %" in text and "0.2660 / 0.2098" in text
    assert "2 seeds in every cell" in text


def test_markdown_marks_no_gain():
    rows = {"480": {"AE": {"mean": 0.17, "std": 0.0}, "GFE-amd": {"mean": 0.18, "std": 0.0},
                    "auto-decoder": {"mean": 0.15, "std": 0.0}}}
    text = gfe_table.markdown({"subset-adam": {"rows": rows}})
    assert "+5.9 %" in text and "— (GFE no gain)" in text
