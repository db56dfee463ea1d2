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
    argv = ["--device", "cpu", "--L", "1", "3", "--edge-channels", "24", "--channels", "3", "5"]
    argv += ["--threads", "1", "--rounds", "3", "--min-run-time", "0.0001", "--no-compile"]
    argv += ["--matmul-size", "64", "--out", str(tmp_path)]
    argv += ["--model-L", "1", "--model-configs", "1", "--model-min-run-time", "0.0001"]
    report = bench.main(argv)
    out = tmp_path / "bench_layer_cpu.json"
    assert out.is_file() and out.with_suffix(".png").stat().st_size > 1000
    on_disk = json.loads(out.read_text())
    assert set(on_disk["results"]) == {"shared", "per_channel"}
    assert on_disk["config"]["main_channels"] == 3
    for form in bench.FORMS:
        assert set(on_disk["results"][form]) == {"3", "5"}
        assert set(on_disk["results"][form]["3"]) == {"1", "3"}
    # the edges are fixed per channel count, the same for every L
    shared = on_disk["results"]["shared"]
    assert {shared["3"][L]["edges"] for L in ("1", "3")} == {8}
    assert {shared["5"][L]["edges"] for L in ("1", "3")} == {4}
    entry = shared["3"]["3"]
    assert entry["d"] == 16 and entry["n_paths"] == 34 and entry["nnz"] == 611
    methods = entry["methods"]
    assert methods["cp_7L2"]["rank"] == 63
    assert methods["cp_exact"]["rank"] == 256  # constructive d^2 at L = 3
    assert methods["cp_sphere"]["rank"] == 114  # 3N with N = 38 Lebedev points
    assert shared["3"]["1"]["methods"]["cp_exact"]["rank"] == 8
    assert methods["edge_frame"]["blocks"] == [4, 6, 4, 2]
    assert set(methods) == set(bench.FORM_METHODS["shared"])
    pc_entry = on_disk["results"]["per_channel"]["3"]["3"]
    per_channel = pc_entry["methods"]
    assert set(per_channel) == set(bench.FORM_METHODS["per_channel"])
    assert per_channel["e3nn"]["mode"] == "uuu" and methods["e3nn"]["mode"] == "uvu"
    for cell in (entry, pc_entry):
        for method, m in cell["methods"].items():
            if "missing" in m:
                assert method == "cuequivariance" and "not installed" in m["missing"]
                continue
            eager = m["eager"]
            for phase in ("forward", "forward_backward"):
                stats = eager[phase]
                assert stats["rounds"] == 3 and len(stats["round_medians_s"]) == 3
                assert stats["iqr_s"][0] <= stats["median_s"] <= stats["iqr_s"][1]
                assert stats["min_s"] <= stats["iqr_s"][0] and stats["max_s"] >= stats["iqr_s"][1]
            model = m["forward_flops"] / (cell["matmul"]["gflops"] * 1e9)
            assert eager["forward"]["model_s"] == pytest.approx(model)
            assert m["compiled"] == {"skipped": "--no-compile"}
    n, c, d, R = 8, 3, 16, 63
    assert methods["cp_7L2"]["forward_flops"] == 2 * n * c * d * R * 2 + 2 * n * d * R + n * c * R
    assert per_channel["cp_7L2"]["forward_flops"] == 6 * n * c * d * R + n * c * R
    assert per_channel["dense_cg"]["forward_flops"] == n * c * (d * d + 2 * d**3)
    assert per_channel["dense_cg_sparse"]["forward_flops"] == n * c * (d * d + 2 * 611)
    assert "Times are in" in entry["compare"]
    summary = report["summary"]["shared"]["3"]
    assert summary["exponents"]["cp_7L2/eager/forward"]["all_L"] is not None
    assert "cp_forward_60pct_of_same_round_matmul_L>=3_eager" in summary["targets"]
    # the decision rows: one per (form, L, C); the fastest exact method really is the fastest
    rows = on_disk["decision"]
    assert [(r["form"], r["L"], r["channels"]) for r in rows] == [
        (form, L, C) for form in bench.FORMS for L in (1, 3) for C in (3, 5)
    ]
    row = rows[2]  # shared, L = 3, C = 3
    exact = {
        m: methods[m]["eager"]["forward"]
        for m in bench.EXACT_METHODS
        if "eager" in methods.get(m, {})
    }
    fastest = min(exact, key=lambda m: exact[m]["median_s"])
    assert row["forward"]["fastest_exact"] == fastest
    cp = methods["cp_7L2"]["eager"]["forward"]
    assert row["forward"]["cp_over_fastest_exact"] == pytest.approx(
        cp["median_s"] / exact[fastest]["median_s"]
    )
    assert row["forward"]["tie"] == bench.is_tie(cp, exact[fastest])
    flop_model = entry["flop_model_exact"]
    assert row["flop_model"]["cp_over_fewest_exact"] == pytest.approx(
        methods["cp_7L2"]["forward_flops"] / min(flop_model.values())
    )
    # the whole model, both forms, ratios to dense in the same form
    model = on_disk["model"]
    assert model["L"] == 1 and model["configs"] == 1
    for form in bench.FORMS:
        names = set(model["results"][form])
        assert names >= {"dense", "cp_7L2", "cp_7L2_function", "cp_exact", "sphere", "e3nn"}
        dense = model["results"][form]["dense"]["train_step"]
        cp_train = model["results"][form]["cp_7L2"]["train_step"]
        assert cp_train["over_dense"] == pytest.approx(cp_train["median_s"] / dense["median_s"])
    tables = out.with_suffix(".md").read_text()
    assert tables == bench.readme_tables(on_disk)
    assert "| 3 | 5 | 4 |" in tables and "| edge_frame |" in tables
    assert "Decision table, layer form per_channel" in tables and "Whole potential" in tables
    # --resummarize recomputes the summary and tables from the JSON without timing anything
    again = bench.main(["--resummarize", "--no-plot", "--out", str(out)])
    assert again["summary"] == json.loads(json.dumps(report["summary"]))
    assert again["decision"] == rows


def test_is_tie_and_round_stats():
    bench = load_bench()
    a = bench.round_stats([1.0, 2.0, 3.0, 4.0, 5.0])
    assert a["median_s"] == 3.0 and a["iqr_s"] == [2.0, 4.0] and a["relative_spread"] == 2 / 3
    assert bench.is_tie(a, bench.round_stats([3.9, 4.0, 4.5]))
    assert not bench.is_tie(a, bench.round_stats([4.1, 4.5, 5.0]))


def test_readme_block_is_generated_from_the_committed_json():
    """experiments/README.md's bench_layer tables are what experiments.readme makes of the JSON."""
    from experiments import readme

    bench = load_bench()
    results = Path(bench.__file__).parent / "results"
    report = json.loads((results / "bench_layer_cpu.json").read_text())
    block = bench.readme_block(report, results)
    assert bench.readme_tables(report) in block and "CP at 7L^2 alone" in block
    assert "Decision table, layer form shared" in block
    assert "Decision table, layer form per_channel" in block
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
    for bad in (["--L", "0"], ["--forms", "both"], ["--edge-channels", "0"], ["--model-L", "5"]):
        with pytest.raises(SystemExit) as info:
            bench.parse_args(bad)
        assert info.value.code == 2
    fifo = tmp_path / "bench_layer_cpu.json"
    os.mkfifo(fifo)
    with pytest.raises(SystemExit) as info:
        bench.parse_args(["--out", str(tmp_path)])
    assert info.value.code == 2 and fifo.exists() and not fifo.is_file()


def test_quick_defaults():
    bench = load_bench()
    args = bench.parse_args(["--quick", "--device", "cpu"])
    assert args.L == [1, 2, 3] and args.channels == [16, 64] and args.rounds == 3
    assert args.no_compile and args.out.name == "bench_layer_cpu.json"
    assert args.edge_channels == 1024 and args.forms == list(bench.FORMS)
    full = bench.parse_args(["--device", "cpu"])
    assert full.rounds == 11 and full.edge_channels == 8192 and full.threads == 1


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
