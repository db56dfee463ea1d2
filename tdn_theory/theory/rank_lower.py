"""Certified lower bounds on the CP rank of a 3-way tensor (flattening and Koszul–Young).

Tensors are indexed ``T[k, i, j]`` (proofs/conventions.md, section 5) and viewed as elements of
``A ⊗ B ⊗ C`` with the *restricted* mode called ``A`` below (any of the three modes may play
that role). All bounds hold over the complex numbers, so they bound the real CP rank too
(real rank >= complex rank >= complex border rank). Proofs: ``proofs/rank_bounds.md``.

Flattening bound
    ``rank(T) >= rank(T_(n))`` for every mode-``n`` unfolding ``T_(n)``, because a rank-one
    tensor has rank-one unfoldings and matrix rank is subadditive.

Koszul–Young flattening (Landsberg–Ottaviani)
    Restrict mode ``A`` by a linear map ``P : A -> C^n`` (a matrix ``(n, dim A)``),
    ``T' = P ·_A T`` (rank cannot grow), slices ``T'_a`` (``a = 0..n-1``, each ``(dim B, dim C)``).
    For ``0 <= p < n`` the linear map

        ``T'^{∧p} : Λ^p C^n ⊗ B* -> Λ^{p+1} C^n ⊗ C,
                    e_S ⊗ β  ↦  Σ_a (e_a ∧ e_S) ⊗ T'_aᵀ β``

    is a matrix of shape ``(binom(n, p+1) dim C, binom(n, p) dim B)``; its block at row set
    ``S ∪ {a}``, column set ``S`` (``a ∉ S``) is ``sign(a, S) · T'_aᵀ`` with
    ``sign(a, S) = (-1)^{#{s ∈ S : s < a}}`` (moving ``e_a`` into sorted position). A rank-one
    tensor gives a map of rank ``binom(n-1, p)``, so

        ``border rank(T) >= rank(T'^{∧p}) / binom(n-1, p)``   (usually ``n = 2p+1``).

    ``p = 0`` is the mode-``A`` flattening itself; ``p = 1, n = 3`` is Strassen's bound.

Numerical rank, certified
    Ranks of float matrices are counted from singular values: ``r`` = number of computed
    singular values above ``max(rtol · σ_1, δ)``, with ``δ`` an a-priori bound on how far the
    computed singular values can lie from those of the exact matrix (rounding of the tensor
    entries, of the restriction, and of the SVD):

        ``δ = 100 · max(m, n_cols) · ε · ||M||_F``,  ``ε = 2^-52``.

    By Weyl's inequality each counted singular value of the exact matrix is positive, so
    ``rank(M_exact) >= r`` holds provided ``δ`` really bounds the rounding, i.e. under the
    assumption that the constants of the standard rounding analysis satisfy
    ``c1 d + c2 max(m, n) <= 100 max(m, n)`` (proofs/rank_bounds.md; assumed, not
    machine-checked). Given that, a tolerance can only weaken a lower bound, never make it false.

    For the "all" CG tensor with L >= 2 the bounds reach exactly ``ceil(1.75 d)``, the generic
    ceiling of p = 3 (every tensor of the format with full-rank maps gets it): they carry no
    CG-specific information; p >= 4 or other flattenings would be needed for more. The gap ``(σ_r, σ_{r+1})`` is reported with every rank.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tdn_theory._checks import check_int
from tdn_theory.cp.tensor_ops import unfold

__all__ = [
    "DEFAULT_RTOL",
    "LowerBound",
    "NumericalRank",
    "best_lower_bound",
    "flattening_bound",
    "flattening_ranks",
    "koszul_young_bound",
    "koszul_young_matrix",
    "koszul_young_size",
    "lower_bounds",
    "numerical_rank",
    "restriction_matrix",
]

#: Singular values below DEFAULT_RTOL * sigma_max are not counted.
DEFAULT_RTOL = 1e-10
#: Safety factor of the a-priori perturbation bound delta (module docstring).
ROUNDING_FACTOR = 100.0


@dataclass(frozen=True)
class NumericalRank:
    """Certified numerical rank of a matrix M of shape ``shape``.

    rank : number of computed singular values above ``threshold``; ``rank(M_exact) >= rank``.
    sigma_max : largest singular value sigma_1.
    sigma_kept : smallest counted singular value sigma_rank (0.0 when rank == 0).
    sigma_dropped : largest uncounted singular value sigma_{rank+1} (0.0 when none).
    threshold : max(rtol * sigma_max, delta).
    delta : a-priori bound on the rounding perturbation of the singular values.
    """

    rank: int
    shape: tuple[int, int]
    sigma_max: float
    sigma_kept: float
    sigma_dropped: float
    rtol: float
    threshold: float
    delta: float

    @property
    def relative_gap(self) -> tuple[float, float]:
        """(sigma_rank / sigma_max, sigma_{rank+1} / sigma_max)."""
        s1 = self.sigma_max if self.sigma_max > 0 else 1.0
        return self.sigma_kept / s1, self.sigma_dropped / s1


def numerical_rank(M: np.ndarray, rtol: float = DEFAULT_RTOL) -> NumericalRank:
    """Certified numerical rank of the matrix M (see the module docstring for the rule)."""
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2:
        raise ValueError(f"numerical_rank: M must be a matrix, got shape {M.shape}")
    if not np.all(np.isfinite(M)):
        raise ValueError("numerical_rank: M has non-finite entries; pass a finite matrix")
    if not (np.isfinite(rtol) and 0 < rtol < 1):
        raise ValueError(f"numerical_rank: rtol must lie in (0, 1), got {rtol!r}")
    m, n = M.shape
    if min(m, n) == 0:
        return NumericalRank(0, (m, n), 0.0, 0.0, 0.0, float(rtol), 0.0, 0.0)
    s = np.linalg.svd(M, compute_uv=False)
    delta = ROUNDING_FACTOR * max(m, n) * np.finfo(np.float64).eps * float(np.linalg.norm(M))
    threshold = max(rtol * float(s[0]), delta)
    r = int(np.count_nonzero(s > threshold))
    return NumericalRank(
        rank=r,
        shape=(m, n),
        sigma_max=float(s[0]),
        sigma_kept=float(s[r - 1]) if r > 0 else 0.0,
        sigma_dropped=float(s[r]) if r < len(s) else 0.0,
        rtol=float(rtol),
        threshold=threshold,
        delta=delta,
    )


@dataclass(frozen=True)
class LowerBound:
    """A certified lower bound ``value`` on the (complex, hence also real) CP rank.

    kind : "flattening" (value = rank of the mode-``mode`` unfolding) or "koszul_young"
        (value = ceil(rank(T'^{∧p}) / binom(n-1, p)), a border-rank bound).
    mode : the unfolded / restricted mode (0 = output k, 1 = input i, 2 = input j).
    p, n, seed : Koszul–Young parameters (None for flattenings): exterior power, dimension of
        the restriction, seed of the integer restriction matrix.
    matrix_rank : the certified numerical rank the value comes from.
    """

    kind: str
    value: int
    mode: int
    matrix_rank: NumericalRank
    p: int | None = None
    n: int | None = None
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (numerical rank included, with its gap)."""
        out = asdict(self)
        out["matrix_rank"]["shape"] = list(self.matrix_rank.shape)
        out["matrix_rank"]["relative_gap"] = list(self.matrix_rank.relative_gap)
        return out


def _check_tensor(T: np.ndarray, who: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 3:
        raise ValueError(f"{who}: T must be a 3-way array, got shape {T.shape}")
    if T.size == 0 or not np.all(np.isfinite(T)):
        raise ValueError(f"{who}: T must be non-empty and finite")
    return T


def _check_mode(mode: int, who: str) -> int:
    if isinstance(mode, bool) or mode not in (0, 1, 2):
        raise ValueError(f"{who}: mode must be 0, 1 or 2, got {mode!r}")
    return int(mode)


def flattening_ranks(T: np.ndarray, rtol: float = DEFAULT_RTOL) -> list[NumericalRank]:
    """Certified numerical ranks of the unfoldings T_(n) = moveaxis(T, n, 0).reshape(d_n, -1)."""
    T = _check_tensor(T, "flattening_ranks")
    return [numerical_rank(unfold(T, mode), rtol) for mode in range(3)]


def flattening_bound(T: np.ndarray, rtol: float = DEFAULT_RTOL) -> LowerBound:
    """rank(T) >= max_n rank(T_(n)); the best mode is returned."""
    ranks = flattening_ranks(T, rtol)
    mode = int(np.argmax([r.rank for r in ranks]))
    return LowerBound("flattening", ranks[mode].rank, mode, ranks[mode])


def restriction_matrix(n: int, dim: int, seed: int) -> np.ndarray:
    """Seeded integer matrix P (n, dim), entries uniform in {-4..4}, used to restrict a mode.

    Integer entries make the restriction P ·_A T exact up to one rounding per product.
    """
    rng = np.random.default_rng(check_int(seed, "seed", who="restriction_matrix"))
    return rng.integers(-4, 5, size=(int(n), int(dim))).astype(np.float64)


def koszul_young_matrix(slices: np.ndarray, p: int) -> np.ndarray:
    """The Koszul–Young map T^{∧p} of T = Σ_a e_a ⊗ slices[a] (module docstring).

    slices : (n, dim B, dim C), T's slices along the restricted mode.
    Returns the matrix of shape (binom(n, p+1) * dim C, binom(n, p) * dim B): row block
    ``S ∪ {a}`` (combinations in lexicographic order), column block ``S``, entry block
    ``sign(a, S) * slices[a].T``.
    """
    slices = np.asarray(slices, dtype=np.float64)
    if slices.ndim != 3:
        raise ValueError(f"koszul_young_matrix: slices must be (n, dimB, dimC), got {slices.shape}")
    n, dB, dC = slices.shape
    p = check_int(p, "p", maximum=n - 1, who="koszul_young_matrix")
    cols = list(itertools.combinations(range(n), p))
    rows = {S: i for i, S in enumerate(itertools.combinations(range(n), p + 1))}
    M = np.zeros((len(rows) * dC, len(cols) * dB))
    for j, S in enumerate(cols):
        for a in range(n):
            if a in S:
                continue
            sign = -1.0 if sum(1 for s in S if s < a) % 2 else 1.0
            i = rows[tuple(sorted(S + (a,)))]
            M[i * dC : (i + 1) * dC, j * dB : (j + 1) * dB] = sign * slices[a].T
    return M


def koszul_young_bound(
    T: np.ndarray,
    p: int,
    *,
    mode: int = 0,
    n: int | None = None,
    seed: int = 0,
    rtol: float = DEFAULT_RTOL,
) -> LowerBound:
    """Border-rank bound ceil(rank(T'^{∧p}) / binom(n-1, p)), T' = P ·_mode T, n = 2p+1 by default.

    P = restriction_matrix(n, T.shape[mode], seed). Any P gives a valid bound; a generic one
    gives the best bound for the chosen (p, n) with probability one.
    """
    T = _check_tensor(T, "koszul_young_bound")
    mode = _check_mode(mode, "koszul_young_bound")
    p = check_int(p, "p", who="koszul_young_bound")
    n = 2 * int(p) + 1 if n is None else int(n)
    if n <= p:
        raise ValueError(f"koszul_young_bound: need n > p, got n={n}, p={p}")
    X = np.moveaxis(T, mode, 0)
    P = restriction_matrix(n, X.shape[0], seed)
    slices = np.tensordot(P, X, axes=(1, 0))
    nr = numerical_rank(koszul_young_matrix(slices, int(p)), rtol)
    value = math.ceil(nr.rank / math.comb(n - 1, int(p)))
    return LowerBound("koszul_young", value, mode, nr, p=int(p), n=n, seed=int(seed))


def koszul_young_size(shape: tuple[int, int, int], p: int, mode: int, n: int | None = None) -> int:
    """Largest side of the Koszul–Young matrix for a tensor of this shape (to budget the SVD)."""
    n = 2 * p + 1 if n is None else n
    others = [shape[m] for m in range(3) if m != mode]
    return max(math.comb(n, p + 1) * others[1], math.comb(n, p) * others[0])


def lower_bounds(
    T: np.ndarray,
    *,
    max_p: int = 3,
    max_matrix_size: int = 2000,
    modes: tuple[int, ...] = (0, 1, 2),
    seeds: tuple[int, ...] = (0,),
    rtol: float = DEFAULT_RTOL,
) -> list[LowerBound]:
    """All bounds computed: the flattening bound, then Koszul–Young for p = 1..max_p, each mode
    and seed, skipping matrices with a side above max_matrix_size."""
    T = _check_tensor(T, "lower_bounds")
    out = [flattening_bound(T, rtol)]
    for p in range(1, int(max_p) + 1):
        for mode in modes:
            if koszul_young_size(T.shape, p, mode) > max_matrix_size:
                continue
            for seed in seeds:
                out.append(koszul_young_bound(T, p, mode=mode, seed=seed, rtol=rtol))
    return out


def best_lower_bound(T: np.ndarray, **kwargs: Any) -> LowerBound:
    """The largest bound of lower_bounds(T, **kwargs) (the first one found on ties)."""
    bounds = lower_bounds(T, **kwargs)
    return max(bounds, key=lambda b: b.value)
