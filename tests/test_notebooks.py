"""Every notebook executes with its small default parameters, and its two forms agree.

The notebooks' source of truth is the jupytext percent file notebooks/NN_name.py; the paired
.ipynb is generated with ``jupytext --to ipynb``. Each notebook runs in a fresh python3 kernel
(nbclient) with a temporary working folder, so nothing is written into the repository.
"""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
jupytext = pytest.importorskip("jupytext")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

#: notebook -> (minimal number of PNG figures, lines its outputs must contain)
EXPECTED = {
    "01_cg_tensor": (2, ["max equivariance error over", "max |M block - e3nn wigner_3j|"]),
    "02_error_vs_rank": (
        1,
        [
            "sampled eps below the a-posteriori bound at every rank: True",
            "every fit at or above the certified lower bound: True",
        ],
    ),
    "03_layer_speed": (1, ["speed-up", "measured time ratio"]),
    "04_network_equivariance": (
        1,
        [
            "defects inside the bound on every rotation: True",
            "mirror-invariant with parity even: True",
        ],
    ),
    "05_accuracy_vs_rank": (
        1,
        ["CP at 7L^2 vs dense force MAE ratio", "exact backend below 1e-9: True"],
    ),
}


def test_every_notebook_is_listed():
    found = {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    assert found == set(EXPECTED), "add new notebooks to EXPECTED in tests/test_notebooks.py"
    assert {p.stem for p in NOTEBOOKS.glob("*.py")} == found, "every .ipynb needs its .py pair"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_pair_in_sync(name):
    """The .ipynb holds the same cells as the .py (regenerate: jupytext --to ipynb <py>)."""
    from_py = jupytext.read(NOTEBOOKS / f"{name}.py")
    from_ipynb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)

    def cells(nb):
        return [(c.cell_type, c.source.strip()) for c in nb.cells]

    assert cells(from_py) == cells(from_ipynb), f"run: jupytext --to ipynb notebooks/{name}.py"
    stored = [c for c in from_ipynb.cells if c.cell_type == "code" and c.get("outputs")]
    assert not stored, f"{name}.ipynb is committed with outputs; regenerate it from the .py"
    first_code = next(c for c in from_py.cells if c.cell_type == "code")
    assert "parameters" in first_code.metadata.get("tags", []), "first code cell: tag 'parameters'"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_executes(name, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    text, figures = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text.append(out["text"])
            figures += "image/png" in out.get("data", {})
    min_figures, lines = EXPECTED[name]
    assert figures >= min_figures, f"{name}: expected >= {min_figures} figures, got {figures}"
    joined = "".join(text)
    for line in lines:
        assert line in joined, f"{name}: output lacks {line!r}"
    assert not any(tmp_path.iterdir()), f"{name} wrote files into its working folder"
