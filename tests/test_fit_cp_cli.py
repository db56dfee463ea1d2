"""python -m tdn_theory.fit_cp: the report, the saved file, and one-line exit-2 errors."""

import json
import os
import re
import stat
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
    for key in (
        "L",
        "rank",
        "relative_error",
        "lower_bound",
        "thm31_bound",
        "aposteriori_bound",
        "equivariance_mean",
        "equivariance_max",
        "seconds",
        "out",
    ):
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
    for label in (
        "relative error",
        "certified lower bound",
        "Thm 3.1 bound",
        "a-posteriori bound",
        "equivariance error",
        "time",
        "factors written to",
        "5 paths",
    ):
        assert label in out
    assert err == ""


def test_default_output_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_main([*SMALL, "--json", "--quiet"], capsys)
    assert code == 0
    assert json.loads(out)["out"] == "cp_L1_R3.npz" and (tmp_path / "cp_L1_R3.npz").is_file()


def _fit_cp_subprocess(tmp_path, stderr, name):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tdn_theory.fit_cp",
            *SMALL,
            "--json",
            "--out",
            str(tmp_path / name),
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


def test_subprocess_json_stdout_is_clean_and_a_log_file_gets_no_progress(tmp_path):
    """stderr not a terminal (a log file): tqdm's convention, no progress bar at all."""
    log = tmp_path / "stderr.log"
    with open(log, "w") as stderr:
        proc = _fit_cp_subprocess(tmp_path, stderr, "s.npz")
    text = log.read_text()
    assert proc.returncode == 0, text
    assert json.loads(proc.stdout)["rank"] == 3  # exactly one JSON object on stdout
    assert text == ""  # no "ALS restarts" / "LM polish" updates written into the log


def test_progress_goes_to_stderr_when_it_is_a_terminal(tmp_path):
    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios
    import threading

    leader, follower = pty.openpty()
    # a fresh pty is 0 columns wide, where tqdm prints an empty bar: give it 100
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    chunks: list[bytes] = []

    def drain():
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the follower side closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = _fit_cp_subprocess(tmp_path, follower, "t.npz")
    finally:
        os.close(follower)
        reader.join(timeout=10)
        os.close(leader)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["rank"] == 3
    assert "ALS restarts" in b"".join(chunks).decode(errors="replace")  # the tqdm bar


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
    argv = [
        "--L",
        "2",
        "--rank",
        "auto",
        "--normalization",
        "sphere",
        "--rotations",
        "10",
        "--json",
        "--quiet",
        "--out",
        str(out_path),
    ]
    code, out, err = run_main(argv, capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["rank"] == 3 * 26  # 3N, N = 26 Lebedev points exact to degree 6
    assert report["relative_error"] < 1e-13 and report["equivariance_max"] < 1e-12
    with np.load(out_path) as data:
        T_hat = np.einsum("kr,ir,jr->kij", data["A"], data["B"], data["C"])
    T = cg_tensor(2, "sphere")
    assert np.linalg.norm(T_hat - T) / np.linalg.norm(T) < 1e-13


def _one_line_exit_2(argv, capsys, mentions=None):
    code, out, err = run_main(argv, capsys)
    assert code == 2 and out == "", err
    assert err.count("\n") == 1 and err.startswith("fit_cp: error:"), err
    if mentions:
        assert mentions in err, err
    return err


def test_special_output_files_are_refused_and_untouched(tmp_path, capsys):
    """Item 1: --out naming a FIFO, a symlink or a device node used to be replaced by a file."""
    fifo = tmp_path / "myfifo"
    os.mkfifo(fifo)
    target = tmp_path / "target.npz"
    target.write_bytes(b"keep")
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    dangling = tmp_path / "dangling.npz"
    dangling.symlink_to(tmp_path / "nowhere.npz")
    cases = [(fifo, stat.S_ISFIFO), (link, stat.S_ISLNK), (dangling, stat.S_ISLNK)]
    null = tmp_path / "mynull"
    try:
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        cases.append((null, stat.S_ISCHR))
    except OSError:
        pass  # no privilege to create device nodes here
    for path, is_kind in cases:
        _one_line_exit_2([*SMALL, "--quiet", "--out", str(path)], capsys, "refusing to replace")
        assert is_kind(os.lstat(path).st_mode)
    assert target.read_bytes() == b"keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["myfifo", "target.npz", "link.npz", "dangling.npz"]
        + (["mynull"] if len(cases) == 4 else [])
    )


def test_trailing_slash_names_a_folder(tmp_path, capsys, monkeypatch):
    """Item 9: --out nonexist_dir/ used to write a file named nonexist_dir."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    for text in ("nonexist_dir/", "adir/"):
        _one_line_exit_2([*SMALL, "--quiet", "--out", text], capsys, "folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir"]
    assert list((tmp_path / "adir").iterdir()) == []


def test_too_many_rotations_is_refused_up_front(tmp_path, capsys, monkeypatch):
    """Item 6: --rotations 1000000000 used to allocate 29.8 GiB, crash and leave the file."""
    monkeypatch.chdir(tmp_path)
    _one_line_exit_2(
        ["--L", "1", "--rank", "8", "--rotations", "1000000000"], capsys, "--rotations 1000000000"
    )
    assert list(tmp_path.iterdir()) == []
    assert cli.estimated_memory(1, 8, 10**9) > cli.estimated_memory(1, 8, 10**3)


def test_failure_after_the_file_was_written_removes_it(tmp_path, capsys, monkeypatch):
    import tdn_theory.theory.equivariance as equivariance

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(equivariance, "check_fit", out_of_memory)
    _one_line_exit_2([*SMALL, "--quiet", "--out", str(tmp_path / "m.npz")], capsys, "memory")
    assert list(tmp_path.iterdir()) == []


def test_huge_restarts_with_a_budget_cost_nothing_up_front(tmp_path, capsys):
    """Item 7: SeedSequence(seed).spawn(restarts) ran before the budget (5e6 restarts: 2.1 GB).
    200,000 restarts used to allocate about 80 MB before the first start; now the budget ends
    the loop after a few starts and memory stays small."""
    import tracemalloc

    tracemalloc.start()
    try:
        code, out, err = run_main(
            [
                "--L",
                "1",
                "--rank",
                "3",
                "--restarts",
                "200000",
                "--time-budget",
                "0.5",
                "--rotations",
                "5",
                "--json",
                "--quiet",
                "--out",
                str(tmp_path / "m.npz"),
            ],
            capsys,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 0, err
    assert json.loads(out)["restarts"] == 200000
    assert peak < 30 * 2**20, peak


def test_sigterm_during_save_leaves_no_file(tmp_path, capsys, monkeypatch):
    """Item 14: SIGTERM while the factor file is written: exit 143, no .tmp, no output."""
    import signal

    from tdn_theory.cp import factor_files

    real_savez = factor_files.np.savez

    def savez_then_sigterm(*args, **kwargs):
        real_savez(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(factor_files.np, "savez", savez_then_sigterm)
    before = signal.getsignal(signal.SIGTERM)
    code, out, err = run_main([*SMALL, "--quiet", "--out", str(tmp_path / "m.npz")], capsys)
    assert code == 143 and out == "" and err.count("\n") == 1 and "SIGTERM" in err
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is restored


def test_sigterm_to_a_running_process(tmp_path):
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tdn_theory.fit_cp",
            "--L",
            "3",
            "--rank",
            "60",
            "--restarts",
            "1000",
            "--time-budget",
            "60",
            "--quiet",
            "--out",
            str(tmp_path / "s.npz"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    # Signal only once the handler is installed (SigCgt in /proc on Linux): a fixed sleep
    # fired too early on a loaded machine, before Python had even imported the package.
    status = Path(f"/proc/{proc.pid}/status")
    deadline = time.monotonic() + 120
    while status.exists() and time.monotonic() < deadline:
        caught = int(re.search(r"SigCgt:\s*([0-9a-f]+)", status.read_text()).group(1), 16)
        if caught >> (signal.SIGTERM - 1) & 1:
            break
        time.sleep(0.05)
    else:
        time.sleep(4)  # no /proc: fall back to a generous fixed wait
    time.sleep(0.5)  # let the fit start
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert out == "" and err.count("\n") == 1 and "SIGTERM" in err
    assert list(tmp_path.iterdir()) == []


def test_help_says_what_the_time_budget_covers(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "not counted" in text and "cold sympy build" in text
