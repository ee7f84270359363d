"""Every Python snippet in README.md runs (a snippet preceded by ``<!-- readme-test: skip: <reason> -->`` is
skipped with that reason)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"(?:<!--\s*readme-test:\s*skip:?\s*(?P<reason>.*?)\s*-->\s*\n)?```python\n(?P<code>.*?)```", re.S)


def snippets() -> list:
    text = README.read_text()
    found = []
    for match in _BLOCK.finditer(text):
        line = text[: match.start("code")].count("\n") + 1
        marks = [pytest.mark.skip(reason=match["reason"])] if match["reason"] is not None else []
        found.append(pytest.param(match["code"], id=f"README.md:{line}", marks=marks))
    return found


def test_readme_has_snippets():
    assert len(snippets()) >= 3


@pytest.mark.parametrize("code", snippets())
def test_readme_snippet_runs(code, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
