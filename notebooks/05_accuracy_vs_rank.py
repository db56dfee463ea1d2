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
# # 05 — Accuracy versus rank: a TDN potential trained on metals and molecules
#
# The CP tensor product at rank $R$ approximates the CG tensor with relative error
# $\|M - \hat M\|_F / \|M\|_F$ (notebook 02). What does that error cost when the product sits
# inside a trained interatomic potential? `python -m experiments.accuracy_vs_rank` trains one
# `TDNPotential` architecture with every tensor-product backend on the same data (a periodic Cu-Au
# alloy from ASE's EMT calculator; ethanol and malonaldehyde with GFN2-xTB energies, forces and
# dipoles), with test configurations from held-out trajectories. Every backend of a seed shares the
# split and the initial weights, so each backend is compared with the exact dense product by paired
# differences over seeds, with a 95 % interval. Besides energy and force errors it records the dipole
# error, the trained model's force-equivariance error $|F(Rx) - R F(x)| / |F(x)|$ and the dipole's
# rotation error $|\mu(Rx) - R\mu(x)|$.
#
# Part 1 reads the committed results (`experiments/results/accuracy_vs_rank.json`). Part 2 trains
# two tiny models live (dense and CP at $7L^2$) so that the notebook also works without results.

# %% tags=["parameters"]
RESULTS_DIR = None  # None: experiments/results of the repository tdn_theory is installed from
LIVE_CONFIGS = 15  # configurations of the live part (3 trajectories: train / validation / test)
LIVE_EPOCHS = 2
LIVE_CHANNELS = 4
SEED = 0

# %%
import json
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

import tdn_theory

results = Path(RESULTS_DIR) if RESULTS_DIR else Path(tdn_theory.__file__).resolve().parents[1] / "experiments" / "results"
print(f"results folder: {results}")

# %% [markdown]
# ## Part 1 — the committed experiment

# %%
path = results / "accuracy_vs_rank.json"
if path.exists():
    result = json.loads(path.read_text())
    print(f"L = {result['L']}, seeds {result['seeds']}, data sets {[d['name'] for d in result['data']]}")
    for d in result["data"]:
        print(f"\n{d['name']}: {d['n_train']} train / {d['n_test']} test (held-out trajectories); "
              f"predict-the-mean energy MAE {d['mean_energy_mae_mev_per_atom']:.2f} meV/atom")
        for r in [r for r in result["summary"] if r["data"] == d["name"]]:
            p = r.get("paired", {}).get("test_force_mae_mev_per_A")
            diff = "" if p is None else f"  Δforce vs dense {p['mean']:+.2f} meV/Å ({p['verdict']})"
            print(f"  {r['label']:<26} force MAE {r['test_force_mae_mev_per_A']:6.1f} meV/Å  "
                  f"energy MAE {r['test_energy_mae_mev_per_atom']:5.2f} meV/atom  "
                  f"force equivariance {r['force_equivariance_mean']:.1e}{diff}")
    d0 = result["data"][0]["name"]
    rows = {r["name"]: r for r in result["summary"] if r["data"] == d0}
    r7 = rows[f"cp{7 * result['L'] ** 2}"]
    print(f"CP at 7L^2 vs dense force MAE ratio ({d0}): {r7['test_force_mae_mev_per_A'] / rows['dense']['test_force_mae_mev_per_A']:.3f}")
    cp = [r for r in result["summary"] if r["backend"] == "cp"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog([max(r["tensor_relative_error"], 1e-16) for r in cp], [max(r["force_equivariance_mean"], 1e-16) for r in cp], "o", label="forces (relative)")
    dip = [r for r in cp if "dipole_rotation_error_eA" in r]
    ax.loglog([max(r["tensor_relative_error"], 1e-16) for r in dip], [max(r["dipole_rotation_error_eA"], 1e-16) for r in dip], "s", label="dipole (e·Å)")
    for r in cp:
        ax.annotate(f"R={r['rank']}", (max(r["tensor_relative_error"], 1e-16), max(r["force_equivariance_mean"], 1e-16)))
    ax.set_xlabel("tensor relative error ||M - M_hat|| / ||M||")
    ax.set_ylabel("trained model: mean rotation defect")
    ax.set_title("tensor-level error -> equivariance after training")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    plt.show()
else:
    print(f"{path} not found: run python -m experiments.accuracy_vs_rank")

# %% [markdown]
# ## Part 2 — a tiny live run
#
# The EMT Cu-Au generator (no extra needed), tiny sizes, held-out trajectories: an exact model (dense)
# and CP at $7L^2$ with identical initial weights. Exact backends are equivariant to rounding; the CP
# model is not.

# %%
from tdn_theory.models import TDNPotential, data
from tdn_theory.models.train import TrainSettings, errors, symmetry_errors, train

os.environ.setdefault("TDN_THEORY_CACHE", tempfile.mkdtemp())
configs = data.load_dataset("cuau-fcc", n_configs=LIVE_CONFIGS, seed=SEED)
train_set, val_set, test_set = data.split_trajectories(configs, seed=SEED)
live = {}
for backend, rank in (("dense", None), ("cp", 28)):
    model = TDNPotential(data.species_of(configs), 2, LIVE_CHANNELS, 1, 4.5, backend=backend, rank=rank, seed=SEED)
    history = train(model, train_set, val_set, TrainSettings(epochs=LIVE_EPOCHS, batch_size=4, lr=1e-2, seed=SEED))
    live[backend] = {**errors(model, test_set), **symmetry_errors(model, test_set[:1], rotations=2, seed=SEED)}
    print(f"live {backend}: force MAE {live[backend]['force_mae_mev_per_A']:.0f} meV/Å, "
          f"force equivariance {live[backend]['force_equivariance_mean']:.1e}")
print(f"live: force equivariance, exact backend below 1e-9: {live['dense']['force_equivariance_worst_found'] < 1e-9}")
