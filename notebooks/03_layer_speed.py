# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 — Layer speed: the CP (TDN) tensor product against the dense CG product
#
# The TDN layer computes, per channel, $\hat m(x, y) = A\,((B^\top x) \odot (C^\top y))$:
# $O(dR)$ work per channel with $d = (L+1)^2$, against $O(d^2)$ per channel plus $O(d^3)$ per
# sample for the dense CG product (`tdn_theory.nn.CGTensorProduct`). With the paper's rank
# $R = 7L^2$ the CP cost grows like $L^4$, the dense one like $L^6$.
#
# Part 1 reads the committed benchmark results (`experiments/results/rank_schedules.json`,
# written by `python -m experiments.rank_schedules`, and `bench_layer_cpu.json`, written by
# `python -m experiments.bench_layer`) and plots them. Part 2 measures a small
# benchmark live on this machine, so the notebook works without the results files too.
# Timings on a shared 2-core machine are noisy; read the trends, not the digits.

# %% tags=["parameters"]
RESULTS_DIR = None  # None: experiments/results of the repository tdn_theory is installed from
LIVE_MAX_L = 3  # part 2 measures L = 1..LIVE_MAX_L (6 for a full picture)
BATCH = 64  # samples (edges) per forward in part 2
CHANNELS = 8  # channels per sample in part 2
REPEATS = 5  # timed forwards per point (the median is kept)
SEED = 0

# %%
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import tdn_theory
from tdn_theory.nn import CGTensorProduct, CPTensorProduct, EdgeFrameTensorProduct

results = Path(RESULTS_DIR) if RESULTS_DIR else Path(tdn_theory.__file__).resolve().parents[1] / "experiments" / "results"
print(f"results folder: {results}")

# %% [markdown]
# ## Part 1 — the committed benchmark (rank schedules versus L)

# %%
path = results / "rank_schedules.json"
if path.exists():
    data = json.loads(path.read_text())
    timing = data["timing"]
    Ls = [b["L"] for b in data["per_L"]]
    names = list(data["per_L"][0]["schedules"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in names:
        ax.plot(Ls, [b["schedules"][name]["layer_seconds"] * 1e3 for b in data["per_L"]], "o-", label=f"CP, R = {name}")
    ax.plot(Ls, [b["dense_cg_seconds"] * 1e3 for b in data["per_L"]], "k--", label="dense CG product")
    ax.set_yscale("log")
    ax.set_xlabel("maximal degree L")
    ax.set_ylabel("ms per forward (median)")
    ax.set_title(f"{timing['batch']} samples x {timing['channels']} channels, float32, 1 thread")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    plt.show()
    prov = data["provenance"]
    print(
        f"measured {prov['finished']} on {prov['machine']['processor']} ({prov['machine']['cpu_count']} CPUs, "
        f"load average {prov['load_average_start'][0]:.1f})"
    )
    for b in data["per_L"]:
        s = b["schedules"]["7L^2"]
        print(
            f"L = {b['L']}: R = 7L^2 = {s['rank']:4d}: CP {s['layer_seconds'] * 1e3:7.3f} ms, "
            f"dense {b['dense_cg_seconds'] * 1e3:7.3f} ms, rel. error {s['relative_error']:.2e}"
        )
else:
    print(f"{path} not found: run `python -m experiments.rank_schedules` (or experiments.run_all)")

# %% [markdown]
# ## Part 1b — the layer benchmark against every exact product (`experiments.bench_layer`)
# `experiments/results/bench_layer_cpu.json` times, interleaved in one run with
# `torch.utils.benchmark`, two layer forms: the second input shared by the channels
# ($y = Y(\hat r)$; the edge-frame product, the dense CG product with $y$ contracted first and in
# the "outer" form) and one per channel ($y$ of shape (N, C, d): the paper's layer
# $z_u = M(x_u, (Wy)_u)$; the dense product as one GEMM of $x \otimes y$ with $M$, or sparse over
# nnz($M$)); in both the CP layer at $R = 7L^2$, at the smallest exact rank known and with the exact
# sphere factors, and e3nn ("uvu" / "uuu"), for 16, 64 and 256 channels. Plotted: eager forward
# time per edge at the main channel count, solid shared, dashed per channel; then the decision rows.

# %%
path = results / "bench_layer_cpu.json"
if path.exists():
    bench = json.loads(path.read_text())
    try:
        main_c = str(bench["config"]["main_channels"])
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for form, style in (("shared", "o-"), ("per_channel", "s--")):
            per_L = bench["results"][form][main_c]
            Ls_b = sorted(per_L, key=int)
            for method, entry in per_L[Ls_b[0]]["methods"].items():
                if "eager" not in entry:
                    continue
                per_edge = [
                    per_L[L]["methods"][method]["eager"]["forward"]["seconds_per_edge"] * 1e6
                    for L in Ls_b
                ]
                ax.plot([int(L) for L in Ls_b], per_edge, style, label=f"{method} ({form})")
        ax.set_yscale("log")
        ax.set_xlabel("maximal degree L")
        ax.set_ylabel("microseconds per edge (eager forward)")
        ax.set_title(f"experiments.bench_layer on CPU, {main_c} channels")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
        plt.show()
        for row in bench["decision"]:
            fwd = row["forward"]
            print(
                f"{row['form']:11s} L = {row['L']}, C = {row['channels']:3d}: fastest exact "
                f"{fwd['fastest_exact']:15s} CP 7L^2 / fastest exact = "
                f"{fwd['cp_over_fastest_exact']:.2f}{' (tie)' if fwd['tie'] else ''}, "
                f"flop model {row['flop_model']['cp_over_fewest_exact']:.2f}"
            )
    except (KeyError, IndexError, TypeError) as exc:
        print(f"{path} has an unexpected layout ({exc!r}); see experiments/bench_layer.py")
else:
    print(f"{path} not found: run `python -m experiments.bench_layer --device cpu`")

# %% [markdown]
# ## Part 2 — a live measurement
# Random factors of the right shapes (the time does not depend on their values), float32,
# one torch thread, median of `REPEATS` forwards after two warm-up calls.

# %%
torch.set_num_threads(1)
gen = torch.Generator().manual_seed(SEED)


def median_time(layer, x, y):
    times = []
    with torch.no_grad():
        for i in range(REPEATS + 2):
            t0 = time.perf_counter()
            layer(x, y)  # y (N, d): shared by the channels; y (N, C, d): one per channel
            if i >= 2:
                times.append(time.perf_counter() - t0)
    return float(np.median(times))


live = []
for L in range(1, LIVE_MAX_L + 1):
    d = (L + 1) ** 2
    R = 7 * L * L
    x = torch.randn(BATCH, CHANNELS, d, generator=gen)
    y = torch.randn(BATCH, d, generator=gen)
    A, B, C = (torch.randn(d, R, generator=gen) for _ in range(3))
    cp_s = median_time(CPTensorProduct(A, B, C), x, y)
    cg_s = median_time(CGTensorProduct(L, dtype=torch.float32), x, y)
    edges = torch.randn(BATCH, 3, generator=gen)
    ef_s = median_time(EdgeFrameTensorProduct(L, dtype=torch.float32), x, edges)
    y_c = torch.randn(BATCH, CHANNELS, d, generator=gen)  # a second input per channel
    cp_c = median_time(CPTensorProduct(A, B, C), x, y_c)
    cg_c = median_time(CGTensorProduct(L, dtype=torch.float32), x, y_c)
    live.append((L, R, cp_s, cg_s, ef_s, cp_c, cg_c))
    print(
        f"L = {L}: shared y: CP (R = {R}) {cp_s * 1e3:.3f} ms, dense CG {cg_s * 1e3:.3f} ms, "
        f"edge frame {ef_s * 1e3:.3f} ms, speed-up {cg_s / cp_s:.2f}x; per-channel y: CP "
        f"{cp_c * 1e3:.3f} ms, dense CG {cg_c * 1e3:.3f} ms, speed-up {cg_c / cp_c:.2f}x"
    )

fig, ax = plt.subplots(figsize=(6, 4))
ax.plot([r[0] for r in live], [r[2] * 1e3 for r in live], "o-", label="CP, R = 7 L^2")
ax.plot([r[0] for r in live], [r[3] * 1e3 for r in live], "k--s", label="dense CG product")
ax.plot([r[0] for r in live], [r[4] * 1e3 for r in live], "g-.^", label="edge frame (exact)")
ax.plot([r[0] for r in live], [r[5] * 1e3 for r in live], "C1o:", label="CP, per-channel y")
ax.plot([r[0] for r in live], [r[6] * 1e3 for r in live], "C2s:", label="dense CG, per-channel y")
ax.set_yscale("log")
ax.set_xlabel("maximal degree L")
ax.set_ylabel("ms per forward (median)")
ax.set_title(f"live: {BATCH} samples x {CHANNELS} channels")
ax.set_xticks([r[0] for r in live])
ax.grid(True, which="both", alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# ## How to read it: count the multiply-adds
# *Shared second input.* Per sample with $C$ channels, the dense layer first contracts $M$ with the
# one-channel input $y$ ($2d^3$ flops as a GEMM, $2\,\mathrm{nnz}(M)$ if done sparsely, shared by
# all channels) and then multiplies each channel by a $d \times d$ matrix ($2Cd^2$). The CP layer
# costs about $2CdR$ ($x B$) $+ 2dR$ ($y C$) $+ CR$ $+ 2CRd$ ($\cdot A^\top$) $\approx 4CdR$. So
# the CP layer does less work only when $4CdR < 2d^3 + 2Cd^2$, i.e. $R < (d^2/C + d)/2$. With the
# paper's $R = 7L^2 \approx 7d$ that needs $d > 13\,C$: few channels and large $L$.
#
# *Second input per channel* (the paper's $z_u = M(x_u, (Wy)_u)$, per-channel, per-degree weights
# on $Y$): there is no $y$-first order. The dense layer costs $d^2$ ($x \otimes y$) $+ 2d^3$ (one
# GEMM) per channel, or $d^2 + 2\,\mathrm{nnz}(M)$ as a sparse product (nnz$(M)/d^3$ = 0.25 at
# L = 1 down to 0.10 at L = 6); CP costs about $6dR$. Against the GEMM form CP at $7L^2$ has fewer
# flops from L = 3 on; against the nnz count it has more at every L (the sparse product runs far
# below the GEMM rate, so the measurement decides). Against e3nn's path-by-path count CP wins at
# every L in the shared form, but loses at L = 1, 2 in the per-channel form. The paper's
# $O(L^6) \to O(L^4)$ count is per channel with each channel contracted with the full $d^3$ tensor.
# The paper's micro-benchmark (4.0x to 83.6x for L = 1..6, GPU, against e3nn's fully connected
# tensor product) is therefore not comparable digit for digit.
#
# The edge-frame product (`EdgeFrameTensorProduct`, exact for $y = Y(\hat r)$) rotates each
# channel into the frame of the edge and back ($2 \cdot 2\sum_l (2l+1)^2$ flops) and applies the
# sparse $m$-blocks of the CG tensor at the polar axis ($2\sum_b s_b^2$): $O(L^3)$ per channel,
# plus the per-edge Wigner recursion, $O(L^4)$ (about $24L^4$ flops for large L; at L = 6 as much
# as 18 channels): $O(L^4 + CL^3)$ per edge. It runs as many small batched products.

# %%
for L, R, cp_s, cg_s, ef_s, cp_c, cg_c in live:
    d = (L + 1) ** 2
    cp_flops = 2 * CHANNELS * d * R + 2 * d * R + CHANNELS * R + 2 * CHANNELS * R * d
    cg_flops = 2 * d**3 + 2 * CHANNELS * d**2
    ef_flops = EdgeFrameTensorProduct(L).flops(1, CHANNELS)
    print(
        f"L = {L}: flops per sample CP {cp_flops:8d}, dense {cg_flops:8d}, edge frame {ef_flops:8d} "
        f"(dense / CP {cg_flops / cp_flops:.2f}); measured time ratio {cg_s / cp_s:.2f}, "
        f"edge frame / dense {ef_s / cg_s:.2f}; per-channel y: flops dense / CP "
        f"{(d * d + 2 * d**3) * CHANNELS / (cp_flops + 2 * (CHANNELS - 1) * d * R):.2f}, "
        f"measured time ratio {cg_c / cp_c:.2f}"
    )
