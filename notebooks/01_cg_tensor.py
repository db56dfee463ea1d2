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
# # 01 — The Clebsch–Gordan tensor: build it, look at it, check its equivariance
#
# A feature of maximal degree $L$ is a vector of length $d = (L+1)^2$: the blocks
# $[\,l=0 \mid l=1 \mid \dots \mid l=L\,]$, block $l$ of length $2l+1$ in e3nn's real basis.
# The CG tensor product is the bilinear map
#
# $$m(x, y)_k = \sum_{i,j} M[k, i, j]\, x_i\, y_j ,$$
#
# with $M$ indexed `[k (output), i (input 1), j (input 2)]`. Its non-zero blocks are the
# admissible *paths* $(l_1, l_2, l_3)$, $|l_1 - l_2| \le l_3 \le l_1 + l_2$, all $\le L$.
# It is **equivariant**: for every rotation $R$ with block Wigner matrix $D(R)$,
# $m(Dx, Dy) = D\, m(x, y)$. That identity is what a low-rank (CP) approximation of $M$
# breaks, and what notebook 02 measures.
#
# The parameters below are small so that the test suite runs this notebook in seconds;
# raise `L` (up to 6 or so) to see larger tensors.

# %% tags=["parameters"]
L = 2  # maximal degree; try 4 or 6
N_ROTATIONS = 20  # seeded Haar rotations for the numerical check
SEED = 0

# %%
import matplotlib.pyplot as plt
import numpy as np

from tdn_theory import so3

M = so3.cg_tensor(L)  # "unit" normalization: each path block has Frobenius norm 1
d = so3.dim(L)
path_list = so3.paths(L)
print(f"L = {L}: d = {d}, tensor shape {M.shape}, {len(path_list)} paths")
print(f"non-zero entries: {np.count_nonzero(np.abs(M) > 1e-14)} of {M.size}")
print(f"||M||_F^2 = {np.linalg.norm(M) ** 2:.6f} (= number of paths for the unit normalization)")

# %% [markdown]
# ## The block structure
# Each path $(l_1, l_2, l_3)$ fills the block `M[slice(l3), slice(l1), slice(l2)]`.
# Left: the Frobenius norm of every block $(l_3; l_1, l_2)$ (1 for an admissible path, 0
# otherwise). Right: the output unfolding $M_{(1)}$ (rows $k$, columns $(i, j)$).

# %%
sl = so3.degree_slices(L)
norms = np.zeros((L + 1, (L + 1) ** 2))
for l3 in range(L + 1):
    for l1 in range(L + 1):
        for l2 in range(L + 1):
            norms[l3, l1 * (L + 1) + l2] = np.linalg.norm(M[sl[l3], sl[l1], sl[l2]])

fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
im = axes[0].imshow(norms, cmap="viridis", aspect="auto")
axes[0].set_xticks(range((L + 1) ** 2))
axes[0].set_xticklabels([f"{a},{b}" for a in range(L + 1) for b in range(L + 1)], fontsize=7)
axes[0].set_xlabel("input degrees (l1, l2)")
axes[0].set_ylabel("output degree l3")
axes[0].set_title("block norms ||M[l3; l1, l2]||_F")
fig.colorbar(im, ax=axes[0])
lim = np.abs(M).max()
im = axes[1].imshow(M.reshape(d, d * d), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
axes[1].set_xlabel("input pair index i * d + j")
axes[1].set_ylabel("output index k")
axes[1].set_title("output unfolding M_(1)")
fig.colorbar(im, ax=axes[1])
plt.show()

# %% [markdown]
# ## It is the e3nn Wigner 3j symbol, block by block
# With the "unit" normalization each block equals e3nn's `wigner_3j(l1, l2, l3)` moved to the
# index order `[m3, m1, m2]`.

# %%
import torch
from e3nn import o3

worst = 0.0
for l1, l2, l3 in path_list:
    ref = o3.wigner_3j(l1, l2, l3, dtype=torch.float64).numpy().transpose(2, 0, 1)
    worst = max(worst, float(np.abs(M[sl[l3], sl[l1], sl[l2]] - ref).max()))
print(f"max |M block - e3nn wigner_3j| over all paths: {worst:.2e}")

# %% [markdown]
# ## Equivariance by eye
# Draw a Haar rotation and two random features. If $m$ is equivariant the points
# $(D\,m(x,y))_k$ versus $m(Dx, Dy)_k$ lie on the diagonal.

# %%
rng = np.random.default_rng(SEED)
R = so3.random_rotations(1, rng)[0]
D = so3.block_wigner_D(L, R)
x, y = rng.standard_normal(d), rng.standard_normal(d)


def m(x, y):
    """The CG product m(x, y)_k = sum_ij M[k, i, j] x_i y_j."""
    return np.einsum("kij,i,j->k", M, x, y)


lhs, rhs = m(D @ x, D @ y), D @ m(x, y)
fig, ax = plt.subplots(figsize=(4, 4))
ax.plot(rhs, lhs, "o", label="entries k")
span = [min(lhs.min(), rhs.min()), max(lhs.max(), rhs.max())]
ax.plot(span, span, "k--", lw=1, label="diagonal")
ax.set_xlabel("D m(x, y)")
ax.set_ylabel("m(D x, D y)")
ax.set_title("equivariance of the exact CG product")
ax.legend()
plt.show()

# %% [markdown]
# ## Equivariance by number
# The largest relative deviation $\|m(Dx, Dy) - D\,m(x, y)\| / (\|x\|\,\|y\|)$ over
# `N_ROTATIONS` seeded rotations and random inputs: round-off only (about $10^{-15}$).

# %%
Rs = so3.random_rotations(N_ROTATIONS, rng)
Ds = so3.block_wigner_D(L, Rs)
X = rng.standard_normal((N_ROTATIONS, d))
Y = rng.standard_normal((N_ROTATIONS, d))
lhs = np.einsum("kij,ni,nj->nk", M, np.einsum("nab,nb->na", Ds, X), np.einsum("nab,nb->na", Ds, Y))
rhs = np.einsum("nab,nb->na", Ds, np.einsum("kij,ni,nj->nk", M, X, Y))
errors = np.linalg.norm(lhs - rhs, axis=1) / (np.linalg.norm(X, axis=1) * np.linalg.norm(Y, axis=1))
print(f"max equivariance error over {N_ROTATIONS} rotations: {errors.max():.2e}")
assert errors.max() < 1e-12

# %% [markdown]
# ## What a careless approximation does
# Set the smallest entries of $M$ to zero (a crude "compression") and the identity breaks:
# the error is now of the size of what was dropped. Notebook 02 does this properly with CP
# decompositions of every rank.

# %%
M_crude = np.where(np.abs(M) > np.quantile(np.abs(M[M != 0]), 0.3), M, 0.0)
lhs = np.einsum(
    "kij,ni,nj->nk", M_crude, np.einsum("nab,nb->na", Ds, X), np.einsum("nab,nb->na", Ds, Y)
)
rhs = np.einsum("nab,nb->na", Ds, np.einsum("kij,ni,nj->nk", M_crude, X, Y))
crude = np.linalg.norm(lhs - rhs, axis=1) / (np.linalg.norm(X, axis=1) * np.linalg.norm(Y, axis=1))
rel = np.linalg.norm(M - M_crude) / np.linalg.norm(M)
print(f"dropped 30% of the non-zero entries: relative error {rel:.3f}")
print(f"max equivariance error of the crude tensor: {crude.max():.3f}")
