"""python -m tdn_theory.fit_cp: the report, the saved file, and one-line exit-2 errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tdn_theory import fit_cp as cli
from tdn_theory.so3 import cg_tensor

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--L", "1", "--rank", "3", "--restarts", "2", "--rotations", "10", "--time-budget", "5"]


def run_main(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_json_report_and_independent_reproduction(tmp_path, capsys):
    out_path = tmp_path / "m.npz"
    code, out, err = run_main([*SMALL, "--json", "--quiet", "--out", str(out_path)], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert list(report) == list(cli.JSON_KEYS)
    for key in ("L", "rank", "relative_error", "lower_bound", "thm31_bound", "aposteriori_bound",
                "equivariance_mean", "equivariance_max", "seconds", "out"):
        assert key in report
    assert report["out"] == str(out_path) and out_path.is_file()
    # independent check: reconstruct from the arrays, compare with the CG tensor
    T = cg_tensor(1)
    with np.load(out_path) as data:
        T_hat = np.einsum("kr,ir,jr->kij", data["A"], data["B"], data["C"])
        meta = json.loads(str(data["meta"]))
    rel = np.linalg.norm(T_hat - T) / np.linalg.norm(T)
    assert rel == pytest.approx(report["relative_error"], rel=1e-10)
    assert meta["relative_error"] == pytest.approx(rel, rel=1e-10)
    assert (meta["L"], meta["rank"], meta["normalization"], meta["parity"]) == (1, 3, "unit", "all")
    # certified figures are consistent with each other
    assert report["lower_bound"] <= report["relative_error"]
    assert report["lower_bound_ratio"] >= 1.0 - 1e-9
    assert report["equivariance_mean"] <= report["equivariance_max"] <= report["aposteriori_bound"]
    assert report["aposteriori_bound"] <= report["aposteriori_frobenius"] + 1e-12
    assert report["thm31_rank"] == 1
    assert report["thm31_vacuous"] == (report["thm31_bound"] >= report["norm"])
    assert (report["d"], report["n_paths"]) == (4, 5)


def test_table_report(tmp_path, capsys):
    code, out, err = run_main([*SMALL, "--quiet", "--out", str(tmp_path / "t.npz")], capsys)
    assert code == 0, err
    for label in ("relative error", "certified lower bound", "Thm 3.1 bound", "a-posteriori bound",
                  "equivariance error", "time", "factors written to", "5 paths"):
        assert label in out
    assert err == ""


def test_default_output_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_main([*SMALL, "--json", "--quiet"], capsys)
    assert code == 0
    assert json.loads(out)["out"] == "cp_L1_R3.npz" and (tmp_path / "cp_L1_R3.npz").is_file()


def test_subprocess_json_stdout_is_clean_and_progress_goes_to_stderr(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "tdn_theory.fit_cp", *SMALL, "--json", "--out",
         str(tmp_path / "s.npz")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rank"] == 3  # exactly one JSON object on stdout
    assert "ALS restarts" in proc.stderr  # the tqdm bar


BAD = [
    (["--L", "1", "--rank", "2.5"], "--rank"),
    (["--L", "1", "--rank", "0"], "--rank"),
    (["--L", "1", "--rank", "-3"], "--rank"),
    (["--L", "-1", "--rank", "3"], "--L"),
    (["--L", "x", "--rank", "3"], "--L"),
    (["--L", "99", "--rank", "3"], "--L"),
    (["--L", "1"], "--rank"),
    (["--L", "1", "--rank", "3", "--bogus"], "--bogus"),
    (["--L", "1", "--rank", "3", "--normalization", "weird"], "normalization"),
    (["--L", "1", "--rank", "3", "--restarts", "0"], "--restarts"),
    (["--L", "1", "--rank", "3", "--time-budget", "nan"], "--time-budget"),
    (["--L", "1", "--rank", "3", "--rotations", "0"], "--rotations"),
    (["--L", "1", "--rank", "3", "--seed", "-2"], "--seed"),
    (["--L", "1", "--rank", "auto"], "--normalization sphere"),
]


@pytest.mark.parametrize(("argv", "mentions"), BAD)
def test_bad_input_exits_2_with_one_line(argv, mentions, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(argv, capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("fit_cp: error:")
    assert mentions in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_unwritable_output_paths(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    for target in (tmp_path / "missing" / "m.npz", tmp_path / "afile" / "m.npz", tmp_path / "adir"):
        code, out, err = run_main([*SMALL, "--out", str(target)], capsys)
        assert code == 2 and out == "" and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]
    assert list((tmp_path / "adir").iterdir()) == []


def test_failed_save_after_fit_leaves_no_file(tmp_path, capsys, monkeypatch):
    from tdn_theory.cp import factor_files

    def broken_savez(*args, **kwargs):
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(factor_files.np, "savez", broken_savez)
    code, out, err = run_main([*SMALL, "--out", str(tmp_path / "m.npz")], capsys)
    assert code == 2 and err.count("\n") == 1 and "Permission denied" in err
    assert list(tmp_path.iterdir()) == []


def test_too_large_for_memory(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_available_memory", lambda: 1 << 20)  # pretend 1 MiB
    code, _, err = run_main(["--L", "3", "--rank", "5", "--out", str(tmp_path / "m.npz")], capsys)
    assert code == 2 and "memory" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_memory_estimate_grows_with_L_and_rank():
    assert cli.estimated_memory(4, 16) < cli.estimated_memory(5, 16) < cli.estimated_memory(5, 500)
    assert cli.estimated_memory(20, 10) > 8 * 441**3  # at least the dense tensor itself


def test_rank_auto_writes_exact_sphere_factors(tmp_path, capsys):
    out_path = tmp_path / "s.npz"
    argv = ["--L", "2", "--rank", "auto", "--normalization", "sphere", "--rotations", "10",
            "--json", "--quiet", "--out", str(out_path)]
    code, out, err = run_main(argv, capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["rank"] == 3 * 26  # 3N, N = 26 Lebedev points exact to degree 6
    assert report["relative_error"] < 1e-13 and report["equivariance_max"] < 1e-12
    with np.load(out_path) as data:
        T_hat = np.einsum("kr,ir,jr->kij", data["A"], data["B"], data["C"])
    T = cg_tensor(2, "sphere")
    assert np.linalg.norm(T_hat - T) / np.linalg.norm(T) < 1e-13
