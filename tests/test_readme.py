"""The README's generated sections (experiments.readme) match the committed results files."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments import readme

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_tables_are_current():
    """Both READMEs and the proofs: every generated section is current, every section is used."""
    names = {}
    for path in readme.FILES:
        text = path.read_text()
        names[str(path.relative_to(README.parent))] = {
            m["name"] for m in readme._BLOCK.finditer(text)
        }
        assert readme.stale_sections(text) == [], f"{path}: run python -m experiments.readme"
    assert {"atlas", "schedules", "nbody", "sphere", "measured", "bounds"} <= names["README.md"]
    assert {"bench_layer_short", "network_short", "accuracy_short"} <= names["README.md"]
    full = {m["name"] for m in readme._BLOCK.finditer(readme.EXPERIMENTS_README.read_text())}
    assert {"bench_layer", "network", "accuracy"} <= full
    assert set().union(*names.values()) == set(readme.SECTIONS)


def test_short_tables_are_rows_of_the_full_ones():
    text = README.read_text()
    full = readme.EXPERIMENTS_README.read_text()
    for short, whole in (("network_short", "network"), ("accuracy_short", "accuracy")):
        rows = readme.SECTIONS[short](readme._io.RESULTS).splitlines()[2:]
        assert rows and all(r in full and r in text for r in rows), short
        assert readme.SECTIONS[whole](readme._io.RESULTS) in full


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
