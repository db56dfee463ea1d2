"""experiments.run_all: ordering, skipping what is current, quick mode isolation, failures.

The behaviour is tested on small fake experiment scripts in a temporary source tree (each run
is a real subprocess, as in run_all itself); the real task registry is checked for consistency.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from experiments import run_all
from experiments.run_all import TASKS, Task

REPO = Path(__file__).resolve().parents[1]

#: A fake experiment under the shared contract: [--quick] --out DIR; writes <name>.json.
WRITER = """
import os, sys
from pathlib import Path
from experiments._io import write_json_atomic
name = Path(sys.argv[0]).stem
args = sys.argv[1:]
out = Path(args[args.index("--out") + 1])
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(name + " " + " ".join(args) + "\\n")
if os.environ.get("FAKE_FAIL") == name:
    sys.exit(3)
write_json_atomic(out / (name + ".json"), {"args": args})
"""


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A minimal source tree: experiments/{__init__,_io,a,b}.py and tdn_theory/."""
    root = tmp_path / "src"
    (root / "experiments").mkdir(parents=True)
    (root / "tdn_theory").mkdir()
    (root / "experiments" / "__init__.py").write_text("")
    shutil.copy(REPO / "experiments" / "_io.py", root / "experiments" / "_io.py")
    (root / "experiments" / "a.py").write_text(WRITER)
    (root / "experiments" / "b.py").write_text(WRITER)
    (root / "tdn_theory" / "__init__.py").write_text("")
    log = tmp_path / "log.txt"
    log.write_text("")
    monkeypatch.setenv("FAKE_LOG", str(log))
    return root, log


def _tasks():
    return (Task("a", ("a.json",)), Task("b", ("b.json",), after=("a",)))


def _run(root, tasks, **kw):
    return run_all.run(
        tasks,
        base=root / "experiments" / "results",
        root=root,
        all_tasks=tasks,
        progress=False,
        **kw,
    )


def _runs(log: Path) -> int:
    return len(log.read_text().splitlines())


def test_quick_runs_into_quick_folder_then_skips(tree):
    root, log = tree
    tasks = _tasks()
    status = _run(root, tasks, quick=True)
    assert status == {"a": "ran", "b": "ran"}
    quick = root / "experiments" / "results" / "quick"
    assert (quick / "a.json").exists() and (quick / "b.json").exists()
    assert not (root / "experiments" / "results" / "a.json").exists()
    manifest = json.loads((quick / run_all.MANIFEST).read_text())
    assert set(manifest) == {"a", "b"} and manifest["a"]["mode"] == "quick"
    assert _runs(log) == 2

    assert _run(root, tasks, quick=True) == {"a": "up to date", "b": "up to date"}
    assert _runs(log) == 2
    assert _run(root, tasks, quick=True, force=True) == {"a": "ran", "b": "ran"}
    assert _runs(log) == 4


def test_full_and_quick_keep_separate_manifests(tree):
    root, log = tree
    tasks = _tasks()[:1]
    assert _run(root, tasks, quick=False) == {"a": "ran"}
    assert (root / "experiments" / "results" / "a.json").exists()
    assert _run(root, tasks, quick=True) == {"a": "ran"}
    assert _run(root, tasks, quick=False) == {"a": "up to date"}


def test_source_edit_or_missing_output_makes_stale(tree):
    root, log = tree
    tasks = _tasks()
    _run(root, tasks, quick=True)
    (root / "tdn_theory" / "__init__.py").write_text("# edited\n")
    assert _run(root, tasks, quick=True) == {"a": "ran", "b": "ran"}
    (root / "experiments" / "results" / "quick" / "b.json").unlink()
    assert _run(root, tasks, quick=True) == {"a": "up to date", "b": "ran"}


def test_upstream_output_change_reruns_downstream(tree):
    root, log = tree
    tasks = _tasks()
    _run(root, tasks, quick=True)
    # a rerun of "a" alone rewrites a.json (same content here, so b stays current) ...
    assert _run(root, tasks[:1], quick=True, force=True) == {"a": "ran"}
    assert _run(root, tasks, quick=True) == {"a": "up to date", "b": "up to date"}
    # ... but different content of a.json makes b stale
    (root / "experiments" / "results" / "quick" / "a.json").write_text('{"changed": 1}\n')
    assert _run(root, tasks, quick=True)["b"] == "ran"


def test_failure_missing_script_and_skipped_downstream(tree, monkeypatch):
    root, log = tree
    monkeypatch.setenv("FAKE_FAIL", "a")
    tasks = _tasks() + (Task("c", ("c.json",)),)
    status = _run(root, tasks, quick=True)
    assert status["a"] == "failed (exit 3)"
    assert status["b"].startswith("skipped")
    assert status["c"] == "missing script"
    assert not (root / "experiments" / "results" / "quick" / run_all.MANIFEST).exists()


def test_quick_flag_and_out_folder_are_passed(tree):
    root, log = tree
    _run(root, _tasks()[:1], quick=True)
    quick = root / "experiments" / "results" / "quick"
    assert log.read_text().splitlines() == [f"a --quick --out {quick}"]


def test_select():
    assert [t.name for t in run_all.select(TASKS, "nbody_ranks")] == ["nbody_ranks"]
    assert run_all.select(TASKS, None) == list(TASKS)
    with pytest.raises(ValueError, match="unknown task"):
        run_all.select(TASKS, "nbody_ranks,nope")


def test_registry_is_consistent():
    names = [t.name for t in TASKS]
    assert len(names) == len(set(names))
    assert names[0] == "fits"  # the store is filled before anything reads it
    for i, task in enumerate(TASKS):
        assert set(task.after) <= set(names[:i]), f"{task.name} runs before what it reads"
        assert task.outputs
        assert run_all.module_exists(task), task.module
        for quick in (False, True):
            argv = task.argv(quick, Path("/x"))
            assert all(isinstance(a, str) for a in argv)
            assert "--out" in argv
            if task.out_file is None:
                assert ("--quick" in argv) == quick
                assert all(o.startswith(task.name + ".") for o in task.outputs)


def test_main_list_and_bad_only(capsys):
    assert run_all.main(["--list", "--quick"]) == 0
    listing = capsys.readouterr().out
    assert all(t.name in listing for t in TASKS)
    with pytest.raises(SystemExit):
        run_all.main(["--only", "no_such_task"])
