"""The README's generated sections (experiments.readme) match the committed results files."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments import readme

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_tables_are_current():
    text = README.read_text()
    names = [m["name"] for m in readme._BLOCK.finditer(text)]
    assert {"atlas", "schedules", "nbody", "sphere", "measured", "bounds"} <= set(names)
    assert readme.stale_sections(text) == [], "run: python -m experiments.readme"


def test_an_edited_number_is_caught():
    text = README.read_text()
    block = next(m for m in readme._BLOCK.finditer(text) if m["name"] == "nbody")
    body = block["body"]
    row = next(line for line in body.splitlines() if line.startswith("| 28 |"))
    cells = row.split(" | ")
    cells[2] = "0.999"  # the fitted error of R = 28
    edited = text.replace(row, " | ".join(cells))
    assert edited != text
    assert readme.stale_sections(edited) == ["nbody"]
    assert readme.render(edited) == readme.render(text)


def test_bad_markers_are_refused():
    with pytest.raises(ValueError, match="lacks"):
        readme.render(
            readme.BEGIN.format(name="nosuch") + "\nx\n" + readme.END.format(name="nosuch")
        )
    with pytest.raises(ValueError, match="without its END"):
        readme.render(readme.BEGIN.format(name="nbody") + "\nx\n")
