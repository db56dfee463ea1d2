"""experiments.bench_layer: a tiny run end to end, its tables, and the README block it generates."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest


def load_bench():
    return importlib.import_module("experiments.bench_layer")


def test_bench_layer_tiny_run_writes_json_png_and_tables(tmp_path):
    bench = load_bench()
    argv = ["--device", "cpu", "--L", "1", "3", "--edges", "24", "--channels", "3", "5"]
    argv += ["--threads", "1", "--rounds", "2", "--no-compile"]
    argv += ["--matmul-size", "64", "--out", str(tmp_path)]
    report = bench.main(argv)
    out = tmp_path / "bench_layer_cpu.json"
    assert out.is_file() and out.with_suffix(".png").stat().st_size > 1000
    on_disk = json.loads(out.read_text())
    assert set(on_disk["results"]) == {"3", "5"} and on_disk["config"]["main_channels"] == 3
    assert set(on_disk["results"]["3"]) == {"1", "3"}
    entry = on_disk["results"]["3"]["3"]
    assert entry["edges"] == 24 and entry["d"] == 16 and entry["n_paths"] == 34
    methods = entry["methods"]
    assert methods["cp_7L2"]["rank"] == 63
    assert methods["cp_exact"]["rank"] == 256  # constructive d^2 at L = 3
    assert methods["cp_sphere"]["rank"] == 114  # 3N with N = 38 Lebedev points
    assert on_disk["results"]["3"]["1"]["methods"]["cp_exact"]["rank"] == 8
    assert methods["edge_frame"]["blocks"] == [4, 6, 4, 2]
    for method in bench.METHODS:
        if "missing" in methods[method]:
            assert method == "cuequivariance" and "not installed" in methods[method]["missing"]
            continue
        eager = methods[method]["eager"]
        assert eager["forward"]["median_s"] > 0 and eager["forward_backward"]["median_s"] > 0
        assert eager["forward"]["repeats"] == 2
        model = methods[method]["forward_flops"] / (entry["matmul"]["gflops"] * 1e9)
        assert eager["forward"]["model_s"] == pytest.approx(model)
        assert methods[method]["compiled"] == {"skipped": "--no-compile"}
    cp = methods["cp_7L2"]
    assert cp["forward_flops"] == 2 * 24 * 3 * 16 * 63 * 2 + 2 * 24 * 16 * 63 + 24 * 3 * 63
    summary = report["summary"]["3"]
    assert summary["exponents"]["cp_7L2/eager/forward"]["all_L"] is not None
    assert set(summary["targets"]) >= {
        "eager/forward",
        "cp_forward_60pct_of_same_round_matmul_L>=3_eager",
    }
    # the decision rows: one per (L, C), the fastest exact method really is the fastest
    rows = on_disk["decision"]
    assert [(r["L"], r["channels"]) for r in rows] == [(1, 3), (1, 5), (3, 3), (3, 5)]
    row = rows[2]
    exact_times = {
        m: methods[m]["eager"]["forward"]["median_s"]
        for m in bench.EXACT_METHODS
        if "eager" in methods[m]
    }
    assert row["forward"]["fastest_exact"] == min(exact_times, key=exact_times.get)
    ratio = cp["eager"]["forward"]["median_s"] / min(exact_times.values())
    assert row["forward"]["cp_over_fastest_exact"] == pytest.approx(ratio)
    tables = out.with_suffix(".md").read_text()
    assert tables == bench.readme_tables(on_disk)
    assert "| 3 | 5 |" in tables and "| edge_frame |" in tables
    # --resummarize recomputes the summary and tables from the JSON without timing anything
    again = bench.main(["--resummarize", "--no-plot", "--out", str(out)])
    assert again["summary"]["3"]["targets"] == json.loads(json.dumps(summary["targets"]))
    assert again["decision"] == rows


def test_readme_block_is_generated_from_the_committed_json():
    """experiments/README.md's bench_layer tables are what experiments.readme makes of the JSON."""
    from experiments import readme

    bench = load_bench()
    results = Path(bench.__file__).parent / "results"
    report = json.loads((results / "bench_layer_cpu.json").read_text())
    block = bench.readme_block(report, results)
    assert bench.readme_tables(report) in block and "CP at 7L^2 alone" in block
    assert "`--page-faults`" in block
    text = readme.EXPERIMENTS_README.read_text()
    assert block.rstrip("\n") in text, "tables are stale: run python -m experiments.readme"
    assert readme.stale_sections(text) == []


def test_bench_layer_refuses_missing_cuda_bad_L_and_special_out(tmp_path):
    bench = load_bench()
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as info:
            bench.parse_args(["--device", "cuda"])
        assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        bench.parse_args(["--L", "0"])
    assert info.value.code == 2
    fifo = tmp_path / "bench_layer_cpu.json"
    os.mkfifo(fifo)
    with pytest.raises(SystemExit) as info:
        bench.parse_args(["--out", str(tmp_path)])
    assert info.value.code == 2 and fifo.exists() and not fifo.is_file()


def test_quick_defaults():
    bench = load_bench()
    args = bench.parse_args(["--quick", "--device", "cpu"])
    assert args.L == [1, 2, 3] and args.channels == [16, 64] and args.rounds == 2
    assert args.no_compile and args.out.name == "bench_layer_cpu.json"


def test_page_fault_study_writes_rows_for_both_paths(tmp_path):
    bench = load_bench()
    out = tmp_path / "faults.json"
    report = bench.page_fault_study(out, repeats=2)
    assert json.loads(out.read_text())["rows"] == report["rows"]
    keys = {(r["L"], r["method"], r["path"]) for r in report["rows"]}
    assert keys == {
        (L, m, p) for L in (3, 4, 5) for m in ("cp_sphere", "cp_7L2") for p in ("plain", "blocked")
    }
    sphere4 = next(r for r in report["rows"] if (r["L"], r["method"]) == (4, "cp_sphere"))
    assert sphere4["rank"] == 222 and sphere4["intermediate_MB"] == 256 * 16 * 222 * 4 / 1e6
    assert bench.page_fault_table(report).count("\n") == 2 + 6
