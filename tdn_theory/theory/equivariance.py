r"""Equivariance error of a CP-approximated Clebsch–Gordan product, and bounds on it.

Conventions (proofs/conventions.md). A bilinear map on features of degree <= L (d = (L+1)^2) is a
tensor ``T`` of shape (d, d, d) indexed ``[k, i, j] = [output, input 1, input 2]``:

    M_T(x, y)_k = sum_{i,j} T[k, i, j] x_i y_j.

A rank-R CP fit is given by factors ``A`` (d x R, output), ``B`` (d x R), ``C`` (d x R) and

    M_hat(x, y)_k = sum_r A[k, r] (B^T x)_r (C^T y)_r,   T_hat = einsum("kr,ir,jr->kij", A, B, C).

Rotations act by ``D = D(R) = blockdiag_l D^l(R)`` (``tdn_theory.so3.block_wigner_D``). The
*equivariance error* of ``T_hat`` at (R, x, y) is

    eps(R, x, y) = || M_hat(D x, D y) - D M_hat(x, y) ||_2.

The group acts on tensors by
``(rho(R) T)[k, i, j] = sum D[k', k] T[k', i', j'] D[i', i] D[j', j]`` (that is T -> D^T T (D, D));
then ``M_hat(Dx, Dy) - D M_hat(x, y) = D (rho(R) T_hat - T_hat)(x, y)``, so
``eps(R, x, y) = ||(rho(R) T_hat - T_hat)(x, y)||`` and T is equivariant iff rho(R) T = T.

Bounds implemented here (proofs in proofs/equivariance_bound.md):

* ``aposteriori_bound``: for E = T_hat - T with T exactly equivariant,
  eps <= 2 ||E_(1)||_2 ||x|| ||y|| <= 2 ||E||_F ||x|| ||y|| (E_(1) the d x d^2 output unfolding).
* ``thm31_bound``: the paper's Theorem 3.1 (a-priori, HOSVD form). It bounds the Frobenius error
  of one specific rank-<=R CP tensor, the HOSVD truncation of T to multilinear rank
  R_T = floor(R^(1/3)) (``hosvd_cp``), not the error of an arbitrary fit.
* ``haar_mean_square``: the exact Haar average
  E_R ||rho(R) T_hat - T_hat||_F^2 = 2 ||(I - P) T_hat||_F^2, P the orthogonal projection onto the
  span of the invariant (path) tensors.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.spatial.transform import Rotation

from tdn_theory._checks import check_degree, check_int
from tdn_theory.cp.lower_bound import absolute_lower_bound, unfolding_singular_values
from tdn_theory.cp.tensor_ops import (
    Factors,
    as_factors,
    bilinear,
    cube_degree,
    degree_of,
    is_dense,
    to_dense,
    unfold,
)
from tdn_theory.so3 import (
    block_wigner_D,
    degree_from_dim,
    degree_slices,
    paths,
    random_rotations,
    unit_block,
)

__all__ = [
    "aposteriori_bound",
    "as_factors",
    "bilinear",
    "check_fit",
    "FitCheck",
    "degree_from_dim",
    "degree_of",
    "equivariance_defect_tensor",
    "equivariance_error",
    "haar_mean_square",
    "hosvd_cp",
    "invariant_path_basis",
    "is_dense",
    "mode_tail_energies",
    "project_invariant",
    "sample_equivariance_errors",
    "thm31_bound",
    "thm31_equivariance_bound",
    "thm31_truncation_rank",
    "to_dense",
    "worst_case_equivariance_error",
]

def _rotation_matrix(R: np.ndarray) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"rotation must have shape (3, 3) or (..., 3, 3), got {R.shape}")
    return R


# --------------------------------------------------------------------------------------------
# equivariance error
# --------------------------------------------------------------------------------------------


def equivariance_error(factors: Any, R: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """eps(R, x, y) = ||M_hat(D x, D y) - D M_hat(x, y)||_2 with D = block_wigner_D(L, R).

    ``factors``: (A, B, C), an object with .A .B .C (e.g. ``tdn_theory.cp.CPFit``), or a dense
    (d, d, d) tensor indexed [k, i, j]. L is read from d = (L+1)^2. x, y: vectors of length d
    (not normalised here; the error is bilinear in x, y).
    """
    L = degree_of(factors)
    d = (L + 1) ** 2
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != (d,) or y.shape != (d,):
        raise ValueError(f"x and y must have shape ({d},) for L={L}, got {x.shape} and {y.shape}")
    D = block_wigner_D(L, _rotation_matrix(R))
    if D.shape != (d, d):
        raise ValueError(f"R must be a single (3, 3) rotation, got shape {np.shape(R)}")
    lhs = bilinear(factors, D @ x, D @ y)
    rhs = D @ bilinear(factors, x, y)
    return float(np.linalg.norm(lhs - rhs))


def _random_unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.standard_normal((n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def sample_equivariance_errors(
    factors: Any, n_rotations: int, seed: int | np.random.Generator
) -> np.ndarray:
    """eps(R_n, x_n, y_n), n = 1..N: Haar rotations R_n; x_n, y_n uniform on the unit sphere of R^d.

    All draws come from ``np.random.default_rng(seed)`` (rotations first, then x, then y). Returns
    an array of shape (N,). For uniform unit x, y,
    E[eps^2 | R] = ||rho(R) T_hat - T_hat||_F^2 / d^2, so E[eps^2] = haar_mean_square(T_hat) / d^2.
    """
    n = check_int(n_rotations, "n_rotations", minimum=1)
    L = degree_of(factors)
    d = (L + 1) ** 2
    rng = np.random.default_rng(seed)
    Rs = random_rotations(n, rng)
    X = _random_unit(rng, n, d)
    Y = _random_unit(rng, n, d)
    D = block_wigner_D(L, Rs)  # (n, d, d)
    DX = np.einsum("nab,nb->na", D, X)
    DY = np.einsum("nab,nb->na", D, Y)
    lhs = bilinear(factors, DX, DY)
    rhs = np.einsum("nab,nb->na", D, bilinear(factors, X, Y))
    return np.linalg.norm(lhs - rhs, axis=1)


def equivariance_defect_tensor(factors: Any, R: np.ndarray) -> np.ndarray:
    """rho(R) T_hat - T_hat, rho(R) T = D^T T (D, D) in [k, i, j] order, D = block_wigner_D(L, R).

    M_hat(Dx, Dy) - D M_hat(x, y) = D (rho(R) T_hat - T_hat)(x, y), so this tensor carries the whole
    equivariance defect at R (its Frobenius norm squared is d^2 E_{x,y}[eps^2]).
    """
    L = degree_of(factors)
    D = block_wigner_D(L, _rotation_matrix(R))
    if is_dense(factors):
        T = np.asarray(factors, dtype=np.float64)
        return np.einsum("ak,aij,ib,jc->kbc", D, T, D, D, optimize=True) - T
    A, B, C = as_factors(factors)
    return np.einsum("kr,ir,jr->kij", D.T @ A, D.T @ B, D.T @ C) - np.einsum(
        "kr,ir,jr->kij", A, B, C
    )


# --------------------------------------------------------------------------------------------
# invariant subspace and the Haar average
# --------------------------------------------------------------------------------------------


Path = tuple[int, int, int]
PathBlock = tuple[Path, tuple[slice, slice, slice], np.ndarray]


@lru_cache(maxsize=16)
def _invariant_basis_cached(L: int) -> tuple[PathBlock, ...]:
    sl = degree_slices(L)
    out = []
    for l1, l2, l3 in paths(L, parity="all"):
        blk = np.array(unit_block(l1, l2, l3), dtype=np.float64)
        blk.setflags(write=False)
        out.append(((l1, l2, l3), (sl[l3], sl[l1], sl[l2]), blk))
    return tuple(out)


def invariant_path_basis(L: int) -> list[PathBlock]:
    """Orthonormal basis of the rho-invariant (equivariant) tensors on degrees 0..L.

    One entry per admissible path (l1, l2, l3): (path, (slice_l3, slice_l1, slice_l2), U) with U the
    unit-Frobenius CG block indexed [m3, m1, m2] (read-only). The embedded blocks occupy disjoint
    index sets, so they are orthonormal; that they span all invariants is Schur's lemma (l1 x l2
    contains l3 at most once), checked numerically in tests/test_universality.py.
    """
    return list(_invariant_basis_cached(check_degree(L)))


def project_invariant(T_hat: Any, L: int | None = None) -> np.ndarray:
    """P T_hat: the orthogonal (Frobenius) projection onto span of the invariant path tensors."""
    T = to_dense(T_hat)
    L = cube_degree(T) if L is None else L
    if T.shape != ((L + 1) ** 2,) * 3:
        raise ValueError(f"tensor shape {T.shape} does not match L={L} (d={(L + 1) ** 2})")
    out = np.zeros_like(T)
    for _, (s3, s1, s2), U in invariant_path_basis(L):
        out[s3, s1, s2] = np.sum(U * T[s3, s1, s2]) * U
    return out


def haar_mean_square(T_hat: Any, L: int | None = None) -> float:
    """Exact Haar average E_R ||rho(R) T_hat - T_hat||_F^2 = 2 ||(I - P) T_hat||_F^2.

    ``T_hat``: dense (d, d, d) tensor [k, i, j] or CP factors. For unit x, y drawn uniformly,
    E_{R,x,y}[eps^2] = haar_mean_square / d^2. If T_hat = T + E with T equivariant, (I - P) T_hat =
    (I - P) E, so the value is <= 2 ||E||_F^2.
    """
    T = to_dense(T_hat)
    L = cube_degree(T) if L is None else L
    if T.shape != ((L + 1) ** 2,) * 3:
        raise ValueError(f"tensor shape {T.shape} does not match L={L} (d={(L + 1) ** 2})")
    residual = T - project_invariant(T, L)  # no cancellation: exact zero for equivariant T
    return 2.0 * float(np.sum(residual * residual))


# --------------------------------------------------------------------------------------------
# bounds
# --------------------------------------------------------------------------------------------


def aposteriori_bound(T: np.ndarray, T_hat: Any) -> dict[str, float]:
    """A-posteriori bounds on eps per unit inputs, for T exactly equivariant and E = T_hat - T.

    Returns {"spectral": 2 ||E_(1)||_2, "frobenius": 2 ||E||_F,
    "projected_spectral": 2 ||((I - P) E)_(1)||_2}: E_(1) the output-mode unfolding (d3 x d1 d2,
    rows k, columns (i, j)), P the projection onto the invariant path tensors. For all R, x, y,

        eps(R, x, y) <= spectral ||x|| ||y|| <= frobenius ||x|| ||y||,
        eps(R, x, y) <= projected_spectral ||x|| ||y||.

    The projected form uses that the invariant part P E cancels in rho(R) E - E; as
    (I - P) E = (I - P) T_hat it needs T_hat only. It is usually the smallest of the three, but
    it is not ordered with "spectral" in general ((I - P) contracts the Frobenius norm, not the
    spectral norm of the unfolding).
    """
    T = np.asarray(T, dtype=np.float64)
    L = cube_degree(T)
    T_hat = to_dense(T_hat)
    if T_hat.shape != T.shape:
        raise ValueError(
            f"T_hat has shape {T_hat.shape} but T has shape {T.shape}; they must match"
        )
    E = T_hat - T
    E1 = E.reshape(E.shape[0], -1)
    Q = T_hat - project_invariant(T_hat, L)
    return {
        "spectral": 2.0 * float(np.linalg.norm(E1, 2)),
        "frobenius": 2.0 * float(np.linalg.norm(E)),
        "projected_spectral": 2.0 * float(np.linalg.norm(Q.reshape(Q.shape[0], -1), 2)),
    }


def mode_tail_energies(T: np.ndarray, r: int) -> np.ndarray:
    """[sum_{k>r} sigma_k(T_(n))^2 for n = 0, 1, 2], T_(n) the mode-n unfolding."""
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 3:
        raise ValueError(f"expected a 3-way tensor, got shape {T.shape}")
    r = check_int(r, "truncation rank")
    return np.array([float(np.sum(s[r:] ** 2)) for s in unfolding_singular_values(T)])


def thm31_truncation_rank(rank: int) -> int:
    """R_T = floor(R^(1/3)) computed in integers (no floating-point cube-root error)."""
    rank = check_int(rank, "rank", minimum=1)
    r = int(round(rank ** (1.0 / 3.0)))
    while r**3 > rank:
        r -= 1
    while (r + 1) ** 3 <= rank:
        r += 1
    return r


def thm31_bound(T: np.ndarray, rank: int) -> float:
    """The paper's Theorem 3.1, a-priori HOSVD form: the ABSOLUTE Frobenius bound

        B_3.1(T, R) = sqrt( sum_{n=1..3} sum_{k > R_T} sigma_k(T_(n))^2 ),   R_T = floor(R^(1/3)),

    on ||T - T_R||_F where T_R is the HOSVD truncation of T to multilinear rank (R_T, R_T, R_T),
    which is a CP tensor of rank R_T^3 <= R (``hosvd_cp``). It does NOT bound an arbitrary fit;
    it shows that some rank-R CP tensor is this close. The paper's equivariance bound is then
    eps <= 2 B_3.1(T, R) ||x|| ||y|| for that T_R (``thm31_equivariance_bound``). The bound is
    vacuous when B_3.1 >= ||T||_F (the zero tensor already achieves error ||T||_F).
    """
    return float(np.sqrt(np.sum(mode_tail_energies(T, thm31_truncation_rank(rank)))))


def thm31_equivariance_bound(T: np.ndarray, rank: int) -> float:
    """2 * thm31_bound(T, rank): Thm 3.1's bound on eps per unit inputs for the HOSVD truncation."""
    return 2.0 * thm31_bound(T, rank)


def hosvd_cp(T: np.ndarray, rank: int) -> Factors:
    """CP factors (A, B, C) of the HOSVD truncation of T to multilinear rank R_T = floor(R^(1/3)).

    With U_n the leading R_T left singular vectors of T_(n) and core G = T x_1 U_1^T x_2 U_2^T x_3
    U_3^T, T_R = sum_{a,b,c} G[a,b,c] U_1[:,a] o U_2[:,b] o U_3[:,c]: one CP term per core entry,
    rank r_1 r_2 r_3 <= R_T^3 <= R with r_n = min(R_T, d_n), and
    ||T - T_R||_F <= thm31_bound(T, R) (proofs/equivariance_bound.md).
    """
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 3:
        raise ValueError(f"expected a 3-way tensor, got shape {T.shape}")
    r_t = thm31_truncation_rank(rank)
    Us = []
    for n in range(3):
        U, _, _ = np.linalg.svd(unfold(T, n), full_matrices=False)
        Us.append(U[:, : min(r_t, T.shape[n])])
    G = np.einsum("kij,ka,ib,jc->abc", T, Us[0], Us[1], Us[2], optimize=True)
    a, b, c = (i.ravel() for i in np.meshgrid(*(np.arange(n) for n in G.shape), indexing="ij"))
    A = Us[0][:, a] * G[a, b, c][None, :]
    B = Us[1][:, b]
    C = Us[2][:, c]
    return A, B, C


# --------------------------------------------------------------------------------------------
# adversarial search
# --------------------------------------------------------------------------------------------


def _rank1_power(
    E: np.ndarray, x: np.ndarray, y: np.ndarray, iters: int = 200, tol: float = 1e-13
) -> tuple[float, np.ndarray, np.ndarray]:
    """Alternating (higher-order power) maximisation of ||E(x, y)|| over unit x, y; monotone."""
    val = float(np.linalg.norm(np.einsum("kij,i,j->k", E, x, y)))
    for _ in range(iters):
        z = np.einsum("kij,i,j->k", E, x, y)
        nz = np.linalg.norm(z)
        if nz == 0.0:
            return 0.0, x, y
        z /= nz
        x_new = np.einsum("kij,k,j->i", E, z, y)
        nx = np.linalg.norm(x_new)
        if nx == 0.0:
            return val, x, y
        x = x_new / nx
        y_new = np.einsum("kij,k,i->j", E, z, x)
        ny = np.linalg.norm(y_new)
        if ny == 0.0:
            return val, x, y
        y = y_new / ny
        new_val = float(np.linalg.norm(np.einsum("kij,i,j->k", E, x, y)))
        if new_val - val <= tol * max(new_val, 1.0):
            val = max(val, new_val)
            break
        val = new_val
    return val, x, y


def worst_case_equivariance_error(
    factors: Any,
    *,
    starts: int = 8,
    seed: int | np.random.Generator = 0,
    rounds: int = 6,
) -> dict[str, Any]:
    """Adversarial search for max eps(R, x, y) over rotations R and unit x, y.

    From ``starts`` seeded starts (Haar rotation, uniform unit x, y), alternate ``rounds`` times:
    (a) at fixed R, a higher-order power iteration maximises ||(rho(R) T_hat - T_hat)(x, y)|| over
    unit x, y; (b) at fixed x, y, L-BFGS-B over a rotation vector w (R <- R expm([w]_x)) maximises
    eps. Both steps never decrease eps. Returns {"value", "rotation" (3x3), "x", "y"} for the
    largest eps found; value is a lower bound on the true maximum, and value <= 2 ||E_(1)||_2.
    """
    starts = check_int(starts, "starts", minimum=1)
    T_hat = to_dense(factors)
    L = cube_degree(T_hat)
    d = (L + 1) ** 2
    rng = np.random.default_rng(seed)
    best: dict[str, Any] = {"value": -1.0}

    def eps_at(Rm: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        D = block_wigner_D(L, Rm)
        return float(np.linalg.norm(bilinear(T_hat, D @ x, D @ y) - D @ bilinear(T_hat, x, y)))

    for _ in range(int(starts)):
        Rm = random_rotations(1, rng)[0]
        x, y = _random_unit(rng, 2, d)
        val = eps_at(Rm, x, y)
        for _ in range(int(rounds)):
            E = equivariance_defect_tensor(T_hat, Rm)
            val_p, x_p, y_p = _rank1_power(E, x, y)
            if val_p >= val:
                val, x, y = val_p, x_p, y_p

            def neg(w: np.ndarray, R0: np.ndarray = Rm, x=x, y=y) -> float:
                return -eps_at(R0 @ Rotation.from_rotvec(w).as_matrix(), x, y)

            res = minimize(neg, np.zeros(3), method="L-BFGS-B", options={"maxiter": 50})
            if -res.fun > val:
                val = -float(res.fun)
                Rm = Rm @ Rotation.from_rotvec(res.x).as_matrix()
        if val > best["value"]:
            best = {"value": val, "rotation": Rm.copy(), "x": x.copy(), "y": y.copy()}
    return best


# --------------------------------------------------------------------------------------------
# one-call report for a fit
# --------------------------------------------------------------------------------------------


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else float("nan")


#: the optional fields of FitCheck, present only after an adversarial search
_WORST_CASE_EXTRAS = ("worst_case_rotation", "worst_case_x", "worst_case_y")


@dataclass(frozen=True)
class FitCheck:
    """Every equivariance figure of one CP fit of an exactly equivariant tensor (see check_fit).

    All figures are per unit inputs ``||x|| = ||y|| = 1`` where an eps is involved; absolute
    figures are Frobenius norms of tensors indexed ``[k, i, j]``. :meth:`to_dict` gives the
    plain dictionary (the field names as keys; the worst-case rotation and inputs only when an
    adversarial search ran).
    """

    L: int
    d: int
    rank: int
    norm_T: float  #: ||T||_F
    fit_error: float  #: ||E||_F, E = T_hat - T
    relative_error: float  #: ||E||_F / ||T||_F
    lower_bound: float  #: certified lower bound on ||T - T'||_F over every rank-R CP T'
    relative_lower_bound: float  #: lower_bound / ||T||_F
    thm31_rank: int  #: R_T = floor(R^(1/3))
    thm31_bound: float  #: Thm 3.1 a-priori absolute Frobenius bound (HOSVD truncation)
    thm31_equivariance_bound: float  #: 2 * thm31_bound
    thm31_vacuous: bool  #: thm31_bound >= ||T||_F
    hosvd_error: float  #: actual ||T - T_R||_F of that truncation
    aposteriori_spectral: float  #: 2 ||E_(1)||_2
    aposteriori_frobenius: float  #: 2 ||E||_F
    aposteriori_projected: float  #: 2 ||((I - P) E)_(1)||_2
    haar_mean_square: float  #: 2 ||(I - P) T_hat||_F^2
    haar_rms_error: float  #: sqrt(haar_mean_square) / d: exact RMS of eps (Haar R, unit x, y)
    n_rotations: int
    mc_mean_error: float  #: mean eps over n_rotations samples
    mc_rms_error: float
    mc_max_error: float
    worst_case_error: float  #: adversarial search if worst_case else the sampled maximum
    worst_case_method: str
    tightness_spectral: float  #: worst_case_error / aposteriori_spectral
    tightness_frobenius: float  #: worst_case_error / aposteriori_frobenius
    tightness_projected: float  #: worst_case_error / aposteriori_projected
    worst_case_rotation: list | None = None  #: 3x3, with worst_case=True only
    worst_case_x: list | None = None
    worst_case_y: list | None = None

    def to_dict(self) -> dict[str, Any]:
        """The figures as a dictionary, in field order, the worst-case rotation and inputs
        (when present) right after ``worst_case_method``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in _WORST_CASE_EXTRAS:
                continue
            out[f.name] = getattr(self, f.name)
            if f.name == "worst_case_method":
                for extra in _WORST_CASE_EXTRAS:
                    if getattr(self, extra) is not None:
                        out[extra] = getattr(self, extra)
        return out

    def __getitem__(self, key: str) -> Any:
        """Deprecated dictionary access (``check_fit`` returned a dict): use attributes or
        :meth:`to_dict`."""
        warnings.warn(
            "check_fit now returns a FitCheck: use report.<name> or report.to_dict()[name]",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.to_dict()[key]


def check_fit(
    T: np.ndarray,
    factors: Any,
    *,
    n_rotations: int = 100,
    seed: int = 0,
    worst_case: bool = False,
    worst_case_starts: int = 8,
) -> FitCheck:
    """Every equivariance figure for one CP fit of an exactly equivariant tensor T (d, d, d).

    Returns a :class:`FitCheck` (its fields document each figure); ``worst_case=True`` runs the
    adversarial search (:func:`worst_case_equivariance_error`, ``worst_case_starts`` starts) and
    records the rotation and inputs it found, otherwise the worst case is the sampled maximum.
    """
    T = np.asarray(T, dtype=np.float64)
    L = cube_degree(T)
    A, B, C = as_factors(factors)
    if A.shape[0] != T.shape[0]:
        raise ValueError(f"factors have d={A.shape[0]} but T has d={T.shape[0]}")
    rank = int(A.shape[1])
    T_hat = to_dense((A, B, C))
    norm_T = float(np.linalg.norm(T))
    fit_error = float(np.linalg.norm(T_hat - T))
    post = aposteriori_bound(T, T_hat)
    t31 = thm31_bound(T, rank)
    hosvd_err = float(np.linalg.norm(to_dense(hosvd_cp(T, rank)) - T))
    hms = haar_mean_square(T_hat, L)
    errs = sample_equivariance_errors((A, B, C), n_rotations, seed)
    lower = float(absolute_lower_bound(T, rank))
    mc_max = float(errs.max())
    extras: dict[str, Any] = {}
    if worst_case:
        wc = worst_case_equivariance_error(T_hat, starts=worst_case_starts, seed=seed)
        worst, method = wc["value"], f"adversarial search ({worst_case_starts} starts)"
        extras = {
            "worst_case_rotation": np.asarray(wc["rotation"]).tolist(),
            "worst_case_x": np.asarray(wc["x"]).tolist(),
            "worst_case_y": np.asarray(wc["y"]).tolist(),
        }
    else:
        worst, method = mc_max, "max over samples"
    return FitCheck(
        L=L,
        d=int(T.shape[0]),
        rank=rank,
        norm_T=norm_T,
        fit_error=fit_error,
        relative_error=_ratio(fit_error, norm_T),
        lower_bound=lower,
        relative_lower_bound=_ratio(lower, norm_T),
        thm31_rank=thm31_truncation_rank(rank),
        thm31_bound=t31,
        thm31_equivariance_bound=2.0 * t31,
        thm31_vacuous=bool(t31 >= norm_T),
        hosvd_error=hosvd_err,
        aposteriori_spectral=post["spectral"],
        aposteriori_frobenius=post["frobenius"],
        aposteriori_projected=post["projected_spectral"],
        haar_mean_square=hms,
        haar_rms_error=float(np.sqrt(hms)) / T.shape[0],
        n_rotations=int(n_rotations),
        mc_mean_error=float(errs.mean()),
        mc_rms_error=float(np.sqrt(np.mean(errs**2))),
        mc_max_error=mc_max,
        worst_case_error=worst,
        worst_case_method=method,
        tightness_spectral=_ratio(worst, post["spectral"]),
        tightness_frobenius=_ratio(worst, post["frobenius"]),
        tightness_projected=_ratio(worst, post["projected_spectral"]),
        **extras,
    )
