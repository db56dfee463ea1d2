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
# # 04 — Network-level equivariance: a TDN potential, its tensor-product backends, and the proven bound
#
# `tdn_theory.models.TDNPotential` is a NequIP/TDN-style message-passing potential whose tensor
# product is chosen by name: `"dense"` (exact CG), `"e3nn"` (e3nn's product), `"cp"` (a CP
# factor file or a fitted rank) and `"sphere"` (the exact quadrature CP). With an exact backend
# the energy is rotation-invariant and the forces equivariant to rounding; with the CP at the
# paper's rank $R = 7L^2$ they are not, and the question is by how much after several layers.
#
# For a rotation $R$ (Wigner matrix $D$) this notebook measures the defects
# $\|h^t(Rx) - D h^t(x)\|$ (features after layer $t$), $|E(Rx) - E(x)|$ and
# $\|F(Rx) - R F(x)\|$, and compares them with the two bounds of `proofs/network_propagation.md`,
# both valid for *every* rotation and evaluated on the configuration by
# `tdn_theory.models.network_bound.evaluate_bound`: Theorem 2 (the default: the exact first-order
# term, bounded on the orbit of rotations, plus a proven second-order remainder) and Theorem 1
# (`method="lipschitz"`: Lipschitz constants propagated layer by layer). Theorem 2 also reports a
# first-order *estimate* of the worst defect, which is not a bound.
# The last part reads the committed full experiment (`python -m experiments.network_equivariance`).

# %% tags=["parameters"]
L = 2  # maximal degree
CHANNELS = 4
DEPTH = 3  # interaction layers
RANK = None  # CP rank; None: the paper's 7 L^2
N_ROTATIONS = 6  # Haar rotations
SEED = 0
RESULTS_DIR = None  # None: experiments/results of the repository tdn_theory is installed from

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase import units

import tdn_theory
from tdn_theory import so3
from tdn_theory.models import TDNCalculator, TDNPotential
from tdn_theory.models.network_bound import evaluate_bound, measure_defects, tensor_product_error

rank = RANK or 7 * L * L
rng = np.random.default_rng(SEED)
atoms = bulk("Cu", "fcc", a=3.75, cubic=True) * (2, 1, 1)
atoms.symbols[rng.choice(len(atoms), 4, replace=False)] = "Au"
atoms.calc = EMT()
MaxwellBoltzmannDistribution(atoms, temperature_K=800, rng=rng)
Langevin(atoms, 2 * units.fs, temperature_K=800, friction=0.02, rng=rng).run(50)
print(f"EMT snapshot: {atoms.get_chemical_formula()}, periodic, EMT energy {atoms.get_potential_energy():.3f} eV")
atoms.calc = None
geometry = (atoms.positions, atoms.numbers, np.asarray(atoms.cell), atoms.pbc)

# %% [markdown]
# ## Exact backends: invariant energy, equivariant forces, identical on identical weights

# %%
dense = TDNPotential(["Cu", "Au"], L, CHANNELS, DEPTH, 4.0, "dense", seed=SEED)
rotations = so3.random_rotations(N_ROTATIONS, seed=SEED)
for name, model in [("dense", dense), ("e3nn", dense.with_backend("e3nn"))]:
    d = measure_defects(model, *geometry, rotations=rotations)
    print(
        f"{name:6s} max energy error {d['energy'].max() / d['energy_scale']:.1e}, "
        f"max force error {d['forces'].max() / d['force_scale']:.1e} (relative)"
    )
atoms.calc = TDNCalculator(dense)
print(f"ASE calculator: E = {atoms.get_potential_energy():.6f}, |F| = {np.linalg.norm(atoms.get_forces()):.6f}")

# %% [markdown]
# ## CP at $7L^2$: measured defects against the bound, layer by layer

# %%
cp = dense.with_backend("cp", rank=rank)
eps, S, rel = tensor_product_error(cp)
print(f"CP rank {rank}: tensor relative error {rel:.3f}, per-degree defect constants 2 eps_l = {np.round(2 * eps, 4)}")
measured = measure_defects(cp, *geometry, rotations=rotations)
bound = evaluate_bound(cp, *geometry)  # Theorem 2
lipschitz = evaluate_bound(cp, *geometry, method="lipschitz")  # Theorem 1
inside = all(
    np.all(measured["features"] <= b.feature_total[None] * (1 + 1e-9))
    and np.all(measured["energy"] <= b.energy)
    and np.all(measured["forces"] <= b.force_total)
    for b in (bound, lipschitz)
)
print(f"defects inside the bound on every rotation: {bool(inside)}")
F_scale, E_scale = measured["force_scale"], measured["energy_scale"]
force_rel = measured["forces"].max() / F_scale
energy_rel = measured["energy"].max() / E_scale
print(
    f"force error after {DEPTH} layers: {force_rel:.2e} (relative); Theorem 2 bound "
    f"{bound.force_total / F_scale:.2e} ({bound.force_total / F_scale / force_rel:.1f}x), "
    f"Theorem 1 bound {lipschitz.force_total / F_scale:.2e} "
    f"({lipschitz.force_total / F_scale / force_rel:.0f}x); first-order estimate (not a bound) "
    f"{bound.force_estimate / F_scale:.2e}"
)
print(
    f"energy error: {energy_rel:.2e}; Theorem 2 bound {bound.energy / E_scale:.2e} "
    f"({bound.energy / E_scale / energy_rel:.1f}x), Theorem 1 {lipschitz.energy / E_scale:.2e}"
)

layers = np.arange(DEPTH + 1)
fig, ax = plt.subplots(figsize=(6, 4))
ax.semilogy(layers[1:], measured["features"].max(axis=0)[1:], "o-", label="measured (max over rotations)")
ax.semilogy(layers[1:], bound.feature_total[1:], "s--", label="bound (Theorem 2, a-priori)")
ax.semilogy(layers[1:], lipschitz.feature_total[1:], "^:", label="bound (Theorem 1)")
ax.set_xlabel("layer t")
ax.set_ylabel("|h^t(Rx) - D h^t(x)|")
ax.set_title(f"feature defect, L={L}, CP rank {rank}")
ax.legend()
plt.show()

# %% [markdown]
# ## Parity: all paths are not mirror-invariant, even paths are
#
# Odd paths ($l_1 + l_2 + l_3$ odd, e.g. the cross product $1\otimes1\to1$) make pseudo-vectors;
# from three layers on they reach the energy. `parity="even"` gives an E(3)-invariant model.

# %%
for parity in ("all", "even"):
    m = TDNPotential(["Cu", "Au"], L, CHANNELS, max(DEPTH, 3), 4.0, "dense", parity=parity, seed=SEED)
    E, F = m.energy_and_forces(*geometry)
    Em, Fm = m.energy_and_forces(-geometry[0], geometry[1], -geometry[2], geometry[3])
    e_rel = abs(float(Em - E)) / abs(float(E))
    f_rel = float((Fm + F).norm() / F.norm())
    print(f"parity {parity:4s}: mirror energy error {e_rel:.1e}, force error {f_rel:.1e}")
    if parity == "even":
        print(f"mirror-invariant with parity even: {e_rel < 1e-10 and f_rel < 1e-9}")

# %% [markdown]
# ## The committed full experiment (L = 1..3, depth 1..6, EMT geometries)
#
# Bound / worst found for both theorems at $7L^2$ (worst over the geometries), and the summary the
# README quotes.

# %%
results = Path(RESULTS_DIR) if RESULTS_DIR else Path(tdn_theory.__file__).resolve().parents[1] / "experiments" / "results"
path = results / "network_equivariance.json"
if path.exists():
    data = json.loads(path.read_text())
    fig, ax = plt.subplots(figsize=(6, 4))
    for Lr in sorted({r["L"] for r in data["rows"]}):
        sel = [r for r in data["rows"] if r["L"] == Lr and r["schedule"] == "7L^2"]
        depths = sorted({r["depth"] for r in sel})
        for key, style, name in (("force_ratio2", "o-", "Thm 2"), ("energy_ratio2", "s--", "Thm 2 energy")):
            ratios = [max(r[key] for r in sel if r["depth"] == d and r[key] is not None) for d in depths]
            ax.semilogy(depths, ratios, style, label=f"L={Lr} {name}")
    ax.axhline(30, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("depth")
    ax.set_ylabel("bound / worst found (7L²)")
    ax.legend(fontsize=7)
    plt.show()
    print(json.dumps(data["tightness"], indent=1))
else:
    print(f"{path} not found: run python -m experiments.network_equivariance")
