"""The README's Python examples run (at reduced sizes) and its set-up commands match CI."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# large sizes of the README examples -> small ones, so that the test takes seconds
SMALLER = [("128", "24"), ("iterations=3000", "iterations=20"), ("10**6", "10**4"), ("10**5", "10**3"),
           ("iters=50", "iters=2"), ("epochs=3", "epochs=1"), ("1000", "50")]


def readme_python() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    code = "\n".join(blocks)
    for big, small in SMALLER:
        code = code.replace(big, small)
    return code


def test_readme_python_examples_run(tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    code = readme_python()
    assert "label(" in code and "WeightLearner" in code and "flow.sample" in code and "gfe.encode" in code
    namespace: dict = {}
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)  # a user's session: the README assumes torch's default dtype
    try:
        exec(compile(code, "README.md", "exec"), namespace)
    finally:
        torch.set_default_dtype(previous)
    assert namespace["configs"].shape == (50, 24)
    assert namespace["marginals"].shape == (24, 2)
    assert namespace["enc"].z.shape == (32, 6)
    assert (tmp_path / "ck.pt").exists() and (tmp_path / "runs" / "gfe").is_dir()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: venv\n\t\$\(BIN\)/python -m pytest", makefile, flags=re.M)
    # the torch pin lives in exactly one place
    generated = {".venv", ".git", "runs", "build"}
    pins = [p for p in ROOT.rglob("*") if p.is_file() and p.suffix in {".txt", ".toml", ".cfg", ".py", ""}
            and not generated.intersection(p.parts) and not any(d.endswith(".egg-info") for d in p.parts)
            and "torch==" in p.read_text(errors="ignore")]
    assert [p.name for p in pins if p.name != "test_readme.py"] == ["constraints.txt"]
