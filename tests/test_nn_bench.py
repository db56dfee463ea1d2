"""experiments.bench_layer runs end to end on a tiny configuration and writes its outputs."""

from __future__ import annotations

import importlib
import json

import pytest


def load_bench():
    return importlib.import_module("experiments.bench_layer")


def test_bench_layer_tiny_run_writes_json_and_png(tmp_path):
    bench = load_bench()
    out = tmp_path / "bench.json"
    argv = ["--device", "cpu", "--L", "1", "3", "--edges", "24", "--channels", "3"]
    argv += ["--threads", "1", "--rounds", "2", "--no-compile"]
    argv += ["--matmul-size", "64", "--out", str(out)]
    report = bench.main(argv)
    assert out.is_file() and out.with_suffix(".png").stat().st_size > 1000
    on_disk = json.loads(out.read_text())
    assert set(on_disk["results"]) == {"1", "3"}
    entry = on_disk["results"]["3"]
    assert entry["edges"] == 24 and entry["d"] == 16 and entry["n_paths"] == 34
    assert entry["methods"]["cp_7L2"]["rank"] == 63
    assert entry["methods"]["cp_exact"]["rank"] == 256  # constructive d^2 at L = 3
    assert on_disk["results"]["1"]["methods"]["cp_exact"]["rank"] == 8
    for method in bench.METHODS:
        eager = entry["methods"][method]["eager"]
        assert eager["forward"]["median_s"] > 0 and eager["forward_backward"]["median_s"] > 0
        assert eager["forward"]["repeats"] == 2
        assert entry["methods"][method]["compiled"] == {"skipped": "--no-compile"}
    cp = entry["methods"]["cp_7L2"]
    assert cp["forward_flops"] == 2 * 24 * 3 * 16 * 63 * 2 + 2 * 24 * 16 * 63 + 24 * 3 * 63
    assert report["summary"]["exponents"]["cp_7L2/eager/forward"]["all_L"] is not None
    targets = report["summary"]["targets"]
    assert set(targets) >= {"eager/forward", "cp_forward_30pct_of_same_round_matmul_L>=3_eager"}
    # --resummarize recomputes the summary from the JSON without timing anything
    again = bench.main(["--resummarize", "--no-plot", "--out", str(out)])
    assert again["summary"]["targets"] == json.loads(json.dumps(targets))


def test_bench_layer_refuses_missing_cuda_and_bad_L():
    bench = load_bench()
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as info:
            bench.parse_args(["--device", "cuda"])
        assert info.value.code == 2
    with pytest.raises(SystemExit):
        bench.parse_args(["--L", "0"])
