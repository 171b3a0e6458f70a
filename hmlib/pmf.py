"""Positive matrix factorization (PMF) with EPA's ``esat`` package: uncertainty, runs, errors.

The factor model is EPA PMF 5.0's [1]_ weighted non-negative factorization

.. math::

    x_{ij} = \\sum_{k=1}^{p} g_{ik} f_{kj} + e_{ij}, \\qquad
    Q = \\sum_{i=1}^{n}\\sum_{j=1}^{m} \\left(\\frac{e_{ij}}{u_{ij}}\\right)^2

solved by ``esat`` (EPA's Environmental Source Apportionment Toolkit, Rust core, version
pinned by the environment: see :data:`ESAT_VERSION`) with its least-squares NMF update
(``ls-nmf``). Each model is started from ``n_starts`` seeded random initialisations and the
start with the lowest :math:`Q_\\mathrm{robust}` is kept, as in EPA PMF 5.0 [1]_.

Contributions are normalised to a mean of 1 per factor (EPA PMF 5.0 convention), so that a
profile row :math:`f_{k\\cdot}` is in the concentration unit of the data (mg/kg for solids).

Functions here are pure: they take arrays/DataFrames and return new objects; every random step
takes a ``seed``. ``esat`` objects are created with ``verbose=False`` and run serially (the
batch and bootstrap classes of esat clear the terminal and start process pools, which do not
belong in a report notebook); the random starts and the bootstrap loop are therefore written
here around :class:`esat.model.sa.SA`, esat's single-model API.

References
----------
.. [1] Norris, G., Duvall, R., Brown, S., Bai, S. (2014). EPA Positive Matrix Factorization
   (PMF) 5.0 Fundamentals and User Guide. EPA/600/R-14/108, U.S. EPA, Washington DC.
   https://www.epa.gov/air-research/positive-matrix-factorization-50-fundamentals-and-user-guide
.. [2] Paatero, P., Tapper, U. (1994). Positive matrix factorization: a non-negative factor model
   with optimal utilization of error estimates of data values. Environmetrics 5, 111-126.
   https://doi.org/10.1002/env.3170050203
.. [3] Paatero, P., Eberly, S., Brown, S. G., Norris, G. A. (2014). Methods for estimating
   uncertainty in factor analytic solutions. Atmos. Meas. Tech. 7, 781-797.
   https://doi.org/10.5194/amt-7-781-2014
"""
from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass, field
from importlib import metadata
from typing import Mapping

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "ESAT_VERSION",
    "pmf_uncertainty",
    "signal_to_noise",
    "species_categories",
    "pmf_input",
    "q_expected",
    "PMFResult",
    "fit_pmf",
    "scan_factor_counts",
    "choose_factor_count",
    "BootstrapResult",
    "bootstrap_pmf",
    "disp_pmf",
    "species_diagnostics",
    "profile_table",
    "contribution_table",
    "cosine_similarity_matrix",
    "match_factors",
    "stand_in_mdl",
    "read_uncertainty_file",
]

try:
    ESAT_VERSION = metadata.version("esat")
except metadata.PackageNotFoundError:  # pragma: no cover - esat is a dependency
    ESAT_VERSION = "not installed"


def _as_frame(x, name: str) -> pd.DataFrame:
    if not isinstance(x, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame (samples x species), got {type(x).__name__}")
    if x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"{name} must have >= 2 rows and >= 1 column, got shape {x.shape}")
    return x


def _per_species(value, columns, name: str) -> pd.Series:
    if isinstance(value, Mapping):
        missing = [c for c in columns if c not in value]
        if missing:
            raise ValueError(f"{name} must give a value for every species; missing {missing}")
        s = pd.Series({c: float(value[c]) for c in columns})
    else:
        s = pd.Series(float(value), index=list(columns))
    if not (s > 0).all() or not np.isfinite(s).all():
        raise ValueError(f"{name} must be positive and finite for every species, got {s.to_dict()}")
    return s


def pmf_uncertainty(concentration: pd.DataFrame, *, mdl: Mapping[str, float] | float,
                    error_fraction: Mapping[str, float] | float) -> pd.DataFrame:
    """Uncertainty of each value from the method detection limit and an error fraction.

    EPA PMF 5.0 user guide equations 5-1 and 5-2 [1]_:

    .. math::

        u_{ij} = \\begin{cases} \\tfrac{5}{6}\\,\\mathrm{MDL}_j & x_{ij} \\le \\mathrm{MDL}_j \\\\
        \\sqrt{(\\mathrm{EF}_j\\, x_{ij})^2 + (0.5\\,\\mathrm{MDL}_j)^2} & x_{ij} > \\mathrm{MDL}_j \\end{cases}

    Parameters
    ----------
    concentration : samples x species, in the unit of ``mdl``.
    mdl : method detection limit per species (mapping) or one value for all.
    error_fraction : error fraction EF per species (mapping) or one value (e.g. 0.1 = 10 %).

    Returns
    -------
    DataFrame of the same shape and labels as ``concentration``.

    References
    ----------
    .. [1] Norris et al. (2014) EPA PMF 5.0 Fundamentals and User Guide, EPA/600/R-14/108.
       https://www.epa.gov/air-research/positive-matrix-factorization-50-fundamentals-and-user-guide
    """
    x = _as_frame(concentration, "concentration")
    if x.isna().any().any():
        bad = x.columns[x.isna().any()].tolist()
        raise ValueError(f"concentration has missing values in {bad}; impute or drop them before PMF")
    md = _per_species(mdl, x.columns, "mdl")
    ef = _per_species(error_fraction, x.columns, "error_fraction")
    v = x.to_numpy(float)
    m = md.to_numpy()[None, :]
    e = ef.to_numpy()[None, :]
    u = np.where(v <= m, 5.0 / 6.0 * m, np.sqrt((e * v) ** 2 + (0.5 * m) ** 2))
    return pd.DataFrame(u, index=x.index, columns=x.columns)


def signal_to_noise(concentration: pd.DataFrame, uncertainty: pd.DataFrame) -> pd.Series:
    """Signal-to-noise ratio of each species as defined in EPA PMF 5.0 [1]_ (eq. 5-3, 5-4).

    .. math::

        d_{ij} = \\begin{cases} (x_{ij} - u_{ij})/u_{ij} & x_{ij} > u_{ij} \\\\ 0 & \\text{otherwise} \\end{cases},
        \\qquad (S/N)_j = \\frac{1}{n}\\sum_{i=1}^{n} d_{ij}

    References
    ----------
    .. [1] Norris et al. (2014) EPA PMF 5.0 Fundamentals and User Guide, EPA/600/R-14/108.
    """
    x = _as_frame(concentration, "concentration")
    u = _as_frame(uncertainty, "uncertainty")
    if x.shape != u.shape or list(x.columns) != list(u.columns):
        raise ValueError(f"uncertainty must have the shape and columns of concentration: {x.shape} "
                         f"{list(x.columns)} vs {u.shape} {list(u.columns)}")
    xv, uv = x.to_numpy(float), u.to_numpy(float)
    d = np.where(xv > uv, (xv - uv) / uv, 0.0)
    return pd.Series(d.mean(axis=0), index=x.columns, name="signal_to_noise")


def species_categories(sn: pd.Series, *, bad_below: float = 0.5, weak_below: float = 1.0,
                       overrides: Mapping[str, str] | None = None) -> pd.Series:
    """Strong / weak / bad category of each species from its S/N (EPA PMF 5.0 guidance [1]_).

    S/N < ``bad_below``: bad (excluded); S/N < ``weak_below``: weak (uncertainty tripled);
    otherwise strong. ``overrides`` (species -> category) win over the S/N rule.

    References
    ----------
    .. [1] Norris et al. (2014) EPA PMF 5.0 Fundamentals and User Guide, EPA/600/R-14/108, sec. 5.2.
    """
    if not bad_below <= weak_below:
        raise ValueError(f"expected bad_below <= weak_below, got {bad_below} and {weak_below}")
    cat = pd.Series(np.where(sn < bad_below, "bad", np.where(sn < weak_below, "weak", "strong")),
                    index=sn.index, name="category")
    for k, v in (overrides or {}).items():
        if k not in cat.index:
            raise ValueError(f"category override for {k!r}, which is not a species ({list(cat.index)})")
        if v not in ("strong", "weak", "bad"):
            raise ValueError(f"category of {k!r} must be strong, weak or bad, got {v!r}")
        cat[k] = v
    return cat


def pmf_input(concentration: pd.DataFrame, uncertainty: pd.DataFrame,
              categories: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Data and uncertainty matrices for PMF: bad species dropped, weak species' uncertainty x3 [1]_.

    References
    ----------
    .. [1] Norris et al. (2014) EPA PMF 5.0 Fundamentals and User Guide, EPA/600/R-14/108, sec. 5.2.
    """
    keep = [c for c in concentration.columns if categories.get(c, "strong") != "bad"]
    if len(keep) < 2:
        raise ValueError(f"PMF needs >= 2 species that are not 'bad'; categories were {categories.to_dict()}")
    u = uncertainty[keep].copy()
    for c in keep:
        if categories.get(c) == "weak":
            u[c] = 3.0 * u[c]
    return concentration[keep].copy(), u


def q_expected(*, n_samples: int, n_strong: int, n_species: int, n_factors: int) -> float:
    """Expected Q of a model with the right number of factors (EPA PMF 5.0 [1]_, sec. 6.1).

    .. math::

        Q_\\mathrm{exp} = n\\,m_\\mathrm{strong} - p\\,(n + m)

    with *n* samples, :math:`m_\\mathrm{strong}` strong species (weak values down-weighted by
    nine are not counted), *m* species in the model and *p* factors.

    References
    ----------
    .. [1] Norris et al. (2014) EPA PMF 5.0 Fundamentals and User Guide, EPA/600/R-14/108.
    """
    q = n_samples * n_strong - n_factors * (n_samples + n_species)
    if q <= 0:
        raise ValueError(f"Q(expected) = {q} <= 0: {n_factors} factors is too many for {n_samples} samples "
                         f"x {n_species} species ({n_strong} strong)")
    return float(q)


@dataclass
class PMFResult:
    """A fitted PMF base model (best of several random starts).

    Attributes
    ----------
    profiles : DataFrame factor x species, concentration unit of the data (contributions mean 1).
    contributions : DataFrame sample x factor, dimensionless, mean 1 per factor.
    data, uncertainty : the matrices the model was fitted to (weak uncertainty tripled).
    n_factors : number of factors p.
    q_true, q_robust : Q of the kept start (robust: residuals beyond 4 uncertainties down-weighted).
    q_expected : Q(expected), see :func:`q_expected`.
    starts : DataFrame of every start: start, seed, q_true, q_robust, converged, steps.
    best_seed : seed of the kept start.
    settings : solver settings (max_iter, converge_delta, converge_n, method, esat version).
    """

    profiles: pd.DataFrame
    contributions: pd.DataFrame
    data: pd.DataFrame
    uncertainty: pd.DataFrame
    n_factors: int
    q_true: float
    q_robust: float
    q_expected: float
    starts: pd.DataFrame
    best_seed: int
    settings: dict = field(default_factory=dict)

    @property
    def predicted(self) -> pd.DataFrame:
        """Modelled concentrations :math:`\\hat x = G F`."""
        return pd.DataFrame(self.contributions.to_numpy() @ self.profiles.to_numpy(), index=self.data.index,
                            columns=self.data.columns)

    @property
    def scaled_residuals(self) -> pd.DataFrame:
        """:math:`(x_{ij} - \\hat x_{ij}) / u_{ij}`."""
        return (self.data - self.predicted) / self.uncertainty


def _quiet_esat():
    for name in ("esat", "esat.model.sa", "esat.error.displacement", "esat.model.batch_sa",
                 "esat.error.bootstrap"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _fix_layout(sa) -> None:
    """Put esat's arrays in the memory layout its Rust core reads correctly.

    esat 2025.0.1's Rust update (``esat_rust.ls_nmf``) reads the data, uncertainty and weight
    matrices as column-major (Fortran order) and W and H as row-major (C order), without
    checking numpy's strides. A C-ordered data matrix (e.g. after row resampling) gives a
    meaningless fit; a Fortran-ordered H scrambles the starting profiles. We checked this on a
    constructed exact factorization (``tests/test_pmf.py::test_esat_memory_layout``).
    """
    sa.V = np.asfortranarray(sa.V, dtype=np.float32)
    sa.U = np.asfortranarray(sa.U, dtype=np.float32)
    sa.We = np.asfortranarray(sa.We, dtype=np.float32)
    sa.W = np.ascontiguousarray(sa.W, dtype=np.float32)
    sa.H = np.ascontiguousarray(sa.H, dtype=np.float32)


def _train_sa(V: np.ndarray, U: np.ndarray, *, n_factors: int, seed: int, H0: np.ndarray | None, max_iter: int,
              converge_delta: float, converge_n: int, W0: np.ndarray | None = None):
    from esat.model.sa import SA

    _quiet_esat()
    sa = SA(V=V, U=U, factors=n_factors, method="ls-nmf", seed=int(seed), verbose=False)
    sa.initialize(H=None if H0 is None else np.array(H0, dtype=np.float64, order="C"),
                  W=None if W0 is None else np.array(W0, dtype=np.float64, order="C"))
    _fix_layout(sa)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        ok = sa.train(max_iter=max_iter, converge_delta=converge_delta, converge_n=converge_n)
    if ok is False or ok == -1 or sa.W is None or not np.all(np.isfinite(sa.W)):
        raise RuntimeError(f"esat SA training failed (seed {seed}, {n_factors} factors)")
    return sa


def _normalise(W: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale so that each factor's contributions have mean 1 (EPA PMF convention)."""
    W = np.asarray(W, float)
    H = np.asarray(H, float)
    s = W.mean(axis=0)
    s = np.where(s > 0, s, 1.0)
    return W / s[None, :], H * s[:, None]


def fit_pmf(concentration: pd.DataFrame, uncertainty: pd.DataFrame, *, n_factors: int, seed: int,
            n_starts: int = 20, n_strong: int | None = None, max_iter: int = 20000, converge_delta: float = 0.1,
            converge_n: int = 100) -> PMFResult:
    """Fit PMF with ``n_starts`` seeded random starts; keep the lowest Q(robust) [1]_.

    Parameters
    ----------
    concentration, uncertainty : samples x species (same labels), e.g. from :func:`pmf_input`.
    n_factors : number of factors p (>= 1).
    seed : seed of the random starts (start *s* uses the *s*-th integer drawn from
        ``numpy.random.default_rng(seed)``).
    n_starts : number of random starts (EPA PMF 5.0 default 20).
    n_strong : number of strong species for Q(expected) (default: all species).
    max_iter, converge_delta, converge_n : esat convergence settings (stop when Q changes by less
        than ``converge_delta`` over ``converge_n`` iterations).

    Returns
    -------
    PMFResult

    References
    ----------
    .. [1] Norris et al. (2014) EPA PMF 5.0 Fundamentals and User Guide, EPA/600/R-14/108.
    """
    x = _as_frame(concentration, "concentration")
    u = _as_frame(uncertainty, "uncertainty")
    if x.shape != u.shape:
        raise ValueError(f"uncertainty shape {u.shape} differs from concentration shape {x.shape}")
    if n_factors < 1 or n_factors >= x.shape[1] + 1:
        raise ValueError(f"n_factors must be between 1 and the number of species ({x.shape[1]}), got {n_factors}")
    if n_starts < 1:
        raise ValueError(f"n_starts must be >= 1, got {n_starts}")
    V = x.to_numpy(np.float64)
    U = u.to_numpy(np.float64)
    if (V < 0).any() or (U <= 0).any() or not np.isfinite(V).all() or not np.isfinite(U).all():
        raise ValueError("PMF needs finite non-negative concentrations and positive finite uncertainties")
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**31 - 1, size=n_starts)
    rows, best = [], None
    for s, sd in enumerate(seeds):
        sa = _train_sa(V, U, n_factors=n_factors, seed=int(sd), H0=None, max_iter=max_iter,
                       converge_delta=converge_delta, converge_n=converge_n)
        rows.append({"start": s + 1, "seed": int(sd), "q_true": float(sa.Qtrue), "q_robust": float(sa.Qrobust),
                     "converged": bool(sa.converged), "steps": int(sa.converge_steps)})
        if best is None or sa.Qrobust < best[1].Qrobust:
            best = (int(sd), sa)
    sd, sa = best
    W, H = _normalise(sa.W, sa.H)
    factors = [f"F{k + 1}" for k in range(n_factors)]
    m_strong = x.shape[1] if n_strong is None else n_strong
    return PMFResult(
        profiles=pd.DataFrame(H, index=factors, columns=x.columns),
        contributions=pd.DataFrame(W, index=x.index, columns=factors),
        data=x.copy(), uncertainty=u.copy(), n_factors=n_factors, q_true=float(sa.Qtrue),
        q_robust=float(sa.Qrobust),
        q_expected=q_expected(n_samples=x.shape[0], n_strong=m_strong, n_species=x.shape[1], n_factors=n_factors),
        starts=pd.DataFrame(rows), best_seed=sd,
        settings={"max_iter": max_iter, "converge_delta": converge_delta, "converge_n": converge_n,
                  "method": "ls-nmf", "esat": ESAT_VERSION, "n_starts": n_starts, "seed": seed},
    )


def scan_factor_counts(concentration: pd.DataFrame, uncertainty: pd.DataFrame, *, factor_counts, seed: int,
                       n_starts: int = 20, n_strong: int | None = None,
                       **solver) -> tuple[pd.DataFrame, dict[int, PMFResult]]:
    """Fit PMF for each factor count; table of Q(true), Q(robust), Q(expected) and Q/Q(exp).

    Returns the table (one row per factor count) and the fitted results keyed by factor count.
    Factor count *p* uses seed ``seed + p`` so each count is reproducible on its own.
    """
    rows, fits = [], {}
    for p in factor_counts:
        r = fit_pmf(concentration, uncertainty, n_factors=int(p), seed=seed + int(p), n_starts=n_starts,
                    n_strong=n_strong, **solver)
        fits[int(p)] = r
        rows.append({"n_factors": int(p), "q_true": r.q_true, "q_robust": r.q_robust, "q_expected": r.q_expected,
                     "q_true_over_expected": r.q_true / r.q_expected,
                     "q_robust_over_expected": r.q_robust / r.q_expected,
                     "converged_starts": int(r.starts["converged"].sum()), "n_starts": n_starts})
    return pd.DataFrame(rows), fits


def choose_factor_count(scan: pd.DataFrame, *, q_ratio_max: float = 1.5) -> tuple[int, str]:
    """Factor count from a scan: the smallest *p* with Q(true)/Q(expected) <= ``q_ratio_max``.

    When no count meets the target, the count after which adding a factor lowers Q(robust)
    least (relative drop) is taken. Returns the count and a sentence saying why.
    """
    s = scan.sort_values("n_factors").reset_index(drop=True)
    ok = s[s["q_true_over_expected"] <= q_ratio_max]
    if len(ok):
        p = int(ok["n_factors"].iloc[0])
        ratio = float(ok["q_true_over_expected"].iloc[0])
        return p, (f"{p} factors: the smallest count with Q(true)/Q(expected) <= {q_ratio_max:g} "
                   f"(ratio {ratio:.2f})")
    if len(s) == 1:
        p = int(s["n_factors"].iloc[0])
        return p, f"{p} factors: the only count in the configured range"
    drop = -s["q_robust"].diff() / s["q_robust"].shift()
    # drop[i] = relative decrease when going from row i-1 to row i; pick p before the smallest drop
    i = int(np.nanargmin(drop.to_numpy()[1:])) + 1
    p = int(s["n_factors"].iloc[i - 1])
    return p, (f"{p} factors: no count reached Q(true)/Q(expected) <= {q_ratio_max:g}; adding a factor "
               f"beyond {p} lowers Q(robust) least ({100 * drop.iloc[i]:.0f} %)")


@dataclass
class BootstrapResult:
    """Bootstrap error estimates of a PMF solution (EPA PMF 5.0 BS [1]_, Paatero et al. 2014 [2]_).

    Attributes
    ----------
    profiles : long DataFrame run, factor, species, concentration (base-factor labels; only
        mapped factors).
    mapping : DataFrame factor, n_runs, n_mapped, mapping_share (share of runs in which a
        bootstrap factor mapped to the base factor).
    q_robust : Q(robust) of each run.
    n_runs, threshold, block_size, seed : settings.
    """

    profiles: pd.DataFrame
    mapping: pd.DataFrame
    q_robust: np.ndarray
    n_runs: int
    threshold: float
    block_size: int | None
    seed: int

    def intervals(self, *, lower: float = 5.0, upper: float = 95.0) -> pd.DataFrame:
        """Percentile interval of each profile value over the mapped runs (EPA reports 5th-95th)."""
        if self.profiles.empty:
            return pd.DataFrame(columns=["factor", "species", "ci_low", "ci_high", "median"])
        g = self.profiles.groupby(["factor", "species"], sort=False)["concentration"]
        return pd.DataFrame({"ci_low": g.quantile(lower / 100), "ci_high": g.quantile(upper / 100),
                             "median": g.median()}).reset_index()


def _resample_index(n: int, rng: np.random.Generator, block_size: int | None) -> np.ndarray:
    if block_size is None or block_size <= 1:
        return rng.integers(0, n, size=n)
    starts = rng.integers(0, n - block_size + 1, size=int(np.ceil(n / block_size)))
    idx = np.concatenate([np.arange(s, s + block_size) for s in starts])[:n]
    return idx


def _bootstrap_run(args):
    """One bootstrap run (top-level so that a process pool can pickle it)."""
    V, U, idx, run_seed, Hb, Wb, p, st = args
    sa = _train_sa(V[idx], U[idx], n_factors=p, seed=run_seed, H0=Hb, W0=Wb[idx], max_iter=st.get("max_iter", 20000),
                   converge_delta=st.get("converge_delta", 0.1), converge_n=st.get("converge_n", 100))
    W, H = _normalise(sa.W, sa.H)
    return W, H, float(sa.Qrobust)


def bootstrap_pmf(result: PMFResult, *, n_runs: int = 100, seed: int, threshold: float = 0.6,
                  block_size: int | None = None, n_jobs: int = 1) -> BootstrapResult:
    """Bootstrap a PMF base run: resample samples, refit, map factors by contributions.

    Each run resamples the samples with replacement (single samples when ``block_size`` is
    None, which suits spatial surveys without a sampling order; else overlapping blocks of that
    many consecutive samples as in EPA PMF 5.0), refits the model with esat starting from the
    base solution (base profiles and the resampled samples' base contributions, so that the
    spread reflects the resampling and not a drift along rotationally ambiguous directions
    from a random start), and maps each bootstrap factor to the base factor whose contributions (of the
    same resampled samples) correlate best with it, if Pearson r >= ``threshold`` (EPA PMF 5.0
    default 0.6) [1]_. A base factor is *mapped* in a run when at least one bootstrap factor
    maps to it; its profile in that run is the mapped factor with the highest r.

    All resampling indices and run seeds are drawn up front from ``default_rng(seed)``, so the
    result does not depend on ``n_jobs`` (runs in a process pool when ``n_jobs`` > 1).

    References
    ----------
    .. [1] Norris et al. (2014) EPA PMF 5.0 Fundamentals and User Guide, EPA/600/R-14/108, sec. 7.
    .. [2] Paatero et al. (2014) Atmos. Meas. Tech. 7, 781-797. https://doi.org/10.5194/amt-7-781-2014
    """
    if n_runs < 1:
        raise ValueError(f"n_runs must be >= 1, got {n_runs}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    V = result.data.to_numpy(np.float64)
    U = result.uncertainty.to_numpy(np.float64)
    Wb = result.contributions.to_numpy()
    Hb = result.profiles.to_numpy()
    n, p = Wb.shape
    rng = np.random.default_rng(seed)
    jobs = []
    for _ in range(n_runs):
        idx = _resample_index(n, rng, block_size)
        jobs.append((V, U, idx, int(rng.integers(0, 2**31 - 1)), Hb, Wb, p, dict(result.settings)))
    if n_jobs > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(processes=int(n_jobs)) as pool:
            fitted = pool.map(_bootstrap_run, jobs)
    else:
        fitted = [_bootstrap_run(j) for j in jobs]
    recs, qs = [], []
    mapped = np.zeros(p, dtype=int)
    for run, ((W, H, q), job) in enumerate(zip(fitted, jobs)):
        qs.append(q)
        base = Wb[job[2]]
        r = np.full((p, p), np.nan)  # r[bs k, base j]
        for k in range(p):
            for j in range(p):
                if np.std(W[:, k]) > 0 and np.std(base[:, j]) > 0:
                    r[k, j] = np.corrcoef(W[:, k], base[:, j])[0, 1]
        r0 = np.nan_to_num(r, nan=-1.0)
        best_j = r0.argmax(axis=1)
        for j in range(p):
            cands = [k for k in range(p) if best_j[k] == j and r0[k, j] >= threshold]
            if not cands:
                continue
            k = max(cands, key=lambda kk: r0[kk, j])
            mapped[j] += 1
            for s_, sp in enumerate(result.profiles.columns):
                recs.append((run + 1, result.profiles.index[j], sp, H[k, s_]))
    prof = pd.DataFrame(recs, columns=["run", "factor", "species", "concentration"])
    mapping = pd.DataFrame({"factor": result.profiles.index, "n_runs": n_runs, "n_mapped": mapped,
                            "mapping_share": mapped / n_runs})
    return BootstrapResult(profiles=prof, mapping=mapping, q_robust=np.array(qs), n_runs=n_runs,
                           threshold=threshold, block_size=block_size, seed=seed)


DQ_MAX = (4, 8, 16, 32)


def _displace(V, U, W, H, base_q, k, j, dq, up: bool, threshold_dq: float, max_search: int) -> float:
    """Bisection (as esat's DISP) for the value of H[k, j] at which Q (W held) rises by dq."""
    from esat.metrics import q_loss

    h0 = H[k, j]
    Hn = H.copy()

    def dq_at(mod):
        Hn[k, j] = h0 * mod
        return q_loss(V=V, U=U, W=W, H=Hn) - base_q

    if up:
        lo, hi = 1.0, 2.0
        n = 0
        while dq_at(hi) < dq and n < 100:
            lo, hi = hi, hi * 2
            n += 1
    else:
        if dq_at(0.0) < dq:  # even zero keeps Q within dq: the interval reaches 0
            return 0.0
        lo, hi = 0.0, 1.0
    mod = (lo + hi) / 2
    for _ in range(max_search):
        d = dq_at(mod)
        if dq - threshold_dq <= d <= dq:
            break
        if up:
            lo, hi = (mod, hi) if d < dq else (lo, mod)
        else:  # smaller modifier means larger dQ
            lo, hi = (lo, mod) if d < dq else (mod, hi)
        mod = (lo + hi) / 2
    return h0 * mod


def disp_pmf(result: PMFResult, *, dq_max=DQ_MAX, max_search: int = 50, threshold_dq: float = 0.1,
             check_swaps: bool = True) -> dict[str, pd.DataFrame]:
    """Displacement (DISP) error estimates, following esat's ``Displacement`` [1]_ [2]_.

    For every factor *k*, species *j* and dQmax in (4, 8, 16, 32), the profile value
    :math:`f_{kj}` is displaced up and down (bisection, contributions held) until
    :math:`Q - Q_{base} = dQmax` (within ``threshold_dq``); the values reached
    bound the DISP interval. To check for factor *swaps*, the model is refitted with esat from
    the displaced profiles, and a swap is counted when a refitted factor's profile correlates
    (r²) better with another base factor than with its own (esat's ``compare_all_factors``).

    Why not esat's class directly: it refits each of the 2 x factors x species x 4 displaced
    models from random contributions (about 85 s for Jura with 3 factors on this machine);
    here the refits start from the base contributions, which converge in a fraction of the
    iterations to the same kind of solution. The displacement search itself is esat's.

    Returns
    -------
    dict with ``intervals`` (dQmax, factor, species, concentration, conc_min, conc_max,
    percent, percent_min, percent_max; concentrations in the data unit with contributions of
    mean 1; percent of species with the displaced value) and ``swaps`` (dQmax, factor,
    swap_percent: share of the 2 x species displacements of that factor that swapped).

    References
    ----------
    .. [1] Paatero et al. (2014) Atmos. Meas. Tech. 7, 781-797. https://doi.org/10.5194/amt-7-781-2014
    .. [2] U.S. EPA ESAT, esat.error.displacement (version in :data:`ESAT_VERSION`).
    """
    from esat.metrics import q_loss
    from esat.model.sa import SA
    from esat.utils import compare_all_factors

    _quiet_esat()
    V = result.data.to_numpy(np.float64)
    U = result.uncertainty.to_numpy(np.float64)
    W = result.contributions.to_numpy(np.float64)
    H = result.profiles.to_numpy(np.float64) + 1e-12
    st = result.settings
    base_q = q_loss(V=V, U=U, W=W, H=H)
    p, m = H.shape
    factors = list(result.profiles.index)
    species = list(result.profiles.columns)
    rows, swaps = [], np.zeros((len(dq_max), p))
    for k in range(p):
        for j in range(m):
            for di, dq in enumerate(dq_max):
                vals = {}
                for up in (True, False):
                    v = _displace(V, U, W, H, base_q, k, j, dq, up, threshold_dq, max_search)
                    vals[up] = v
                    if check_swaps:
                        Hn = H.copy()
                        Hn[k, j] = max(v, 1e-12)
                        sa = SA(V=V, U=U, factors=p, method="ls-nmf", seed=int(result.best_seed), verbose=False)
                        sa.initialize(H=np.array(Hn, order="C"), W=np.array(W, order="C"))
                        _fix_layout(sa)
                        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                            sa.train(max_iter=st.get("max_iter", 20000), converge_delta=st.get("converge_delta", 0.1),
                                     converge_n=st.get("converge_n", 100))
                        swaps[di, k] += bool(compare_all_factors(np.asarray(sa.H, float), H))
                pct = []
                for v in (vals[True], vals[False]):
                    col = H[:, j].copy()
                    col[k] = v
                    pct.append(100 * v / col.sum() if col.sum() > 0 else np.nan)
                rows.append({"dQmax": int(dq), "factor": factors[k], "species": species[j],
                             "concentration": H[k, j], "conc_min": vals[False], "conc_max": vals[True],
                             "percent": 100 * H[k, j] / H[:, j].sum(), "percent_min": pct[1],
                             "percent_max": pct[0]})
    sw = [{"dQmax": int(dq), "factor": f, "swap_percent": 100 * swaps[di, k] / (2 * m) if check_swaps else np.nan}
          for di, dq in enumerate(dq_max) for k, f in enumerate(factors)]
    return {"intervals": pd.DataFrame(rows), "swaps": pd.DataFrame(sw)}


def species_diagnostics(result: PMFResult) -> pd.DataFrame:
    """Per species: observed vs predicted r², slope, and normality of the scaled residuals.

    r² and slope from the ordinary least-squares regression of observed on predicted
    concentrations (scipy ``linregress``); residual normality by the Lilliefors (Kolmogorov-
    Smirnov with estimated mean and variance) test of the scaled residuals
    :math:`(x_{ij} - \\hat x_{ij})/u_{ij}` (statsmodels), as EPA PMF 5.0 reports a KS test per
    species [1]_; ``share_scaled_residual_gt3`` is the share of |scaled residual| > 3.

    References
    ----------
    .. [1] Norris et al. (2014) EPA PMF 5.0 Fundamentals and User Guide, EPA/600/R-14/108, sec. 6.
    .. [2] Lilliefors, H. W. (1967). J. Am. Stat. Assoc. 62, 399-402. https://doi.org/10.1080/01621459.1967.10482916
    """
    from statsmodels.stats.diagnostic import lilliefors

    pred = result.predicted
    sr = result.scaled_residuals
    rows = []
    for sp in result.data.columns:
        obs = result.data[sp].to_numpy(float)
        pr = pred[sp].to_numpy(float)
        lr = stats.linregress(pr, obs)
        res = sr[sp].to_numpy(float)
        ks, ksp = lilliefors(res, dist="norm", pvalmethod="table")
        rows.append({"species": sp, "r2": lr.rvalue ** 2, "slope": lr.slope, "intercept": lr.intercept,
                     "ks_statistic": float(ks), "ks_p": float(ksp), "residuals_normal": bool(ksp > 0.05),
                     "share_scaled_residual_gt3": float(np.mean(np.abs(res) > 3))})
    return pd.DataFrame(rows)


def profile_table(result: PMFResult, boot: BootstrapResult | None = None) -> pd.DataFrame:
    """Tidy profiles: factor, species, concentration, percent_of_species, ci_low, ci_high.

    .. math:: \\%_{kj} = 100\\, f_{kj} / \\sum_{k'} f_{k'j}

    (with contributions of mean 1, the share of species *j*'s mean modelled concentration
    explained by factor *k*; EPA PMF 5.0 [1]_). ``ci_low``/``ci_high`` are the 5th and 95th
    percentiles of the bootstrap profiles (NaN without a bootstrap).
    """
    F = result.profiles
    pct = 100 * F / F.sum(axis=0)
    long = F.stack().rename("concentration").reset_index()
    long.columns = ["factor", "species", "concentration"]
    long["percent_of_species"] = pct.stack().to_numpy()
    if boot is not None:
        iv = boot.intervals()
        long = long.merge(iv[["factor", "species", "ci_low", "ci_high"]], on=["factor", "species"], how="left")
    else:
        long["ci_low"] = np.nan
        long["ci_high"] = np.nan
    return long


def contribution_table(result: PMFResult) -> pd.DataFrame:
    """Tidy contributions: sample_id, factor, contribution (mean 1), share.

    ``share`` is the factor's mean share of the sample's modelled concentrations over species,
    which does not depend on the species' units or magnitudes:

    .. math:: s_{ik} = \\frac{1}{m}\\sum_{j=1}^{m} \\frac{g_{ik} f_{kj}}{\\sum_{k'} g_{ik'} f_{k'j}}
    """
    G = result.contributions.to_numpy()
    F = result.profiles.to_numpy()
    parts = G[:, :, None] * F[None, :, :]  # n x p x m
    tot = parts.sum(axis=1, keepdims=True)
    share = np.where(tot > 0, parts / np.where(tot > 0, tot, 1), 0.0).mean(axis=2)
    out = []
    for k, f in enumerate(result.contributions.columns):
        out.append(pd.DataFrame({"sample_id": result.contributions.index, "factor": f, "contribution": G[:, k],
                                 "share": share[:, k]}))
    return pd.concat(out, ignore_index=True)


def cosine_similarity_matrix(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Cosine similarity of every row of ``a`` with every row of ``b`` over their common columns.

    .. math:: \\cos(a, b) = \\frac{a \\cdot b}{\\lVert a \\rVert\\,\\lVert b \\rVert}
    """
    cols = [c for c in a.columns if c in b.columns]
    if not cols:
        raise ValueError(f"no common columns between {list(a.columns)} and {list(b.columns)}")
    A = a[cols].to_numpy(float)
    B = b[cols].to_numpy(float)
    na = np.linalg.norm(A, axis=1, keepdims=True)
    nb = np.linalg.norm(B, axis=1, keepdims=True)
    S = (A / np.where(na > 0, na, 1)) @ (B / np.where(nb > 0, nb, 1)).T
    return pd.DataFrame(S, index=a.index, columns=b.index)


def match_factors(estimated: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """One-to-one matching of estimated to true profiles maximising total cosine similarity.

    Uses the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``). Returns factor,
    source, cosine.
    """
    from scipy.optimize import linear_sum_assignment

    S = cosine_similarity_matrix(estimated, truth)
    r, c = linear_sum_assignment(-S.to_numpy())
    return pd.DataFrame({"factor": S.index[r], "source": S.columns[c], "cosine": S.to_numpy()[r, c]})


def stand_in_mdl(concentration: pd.DataFrame) -> pd.Series:
    """Stand-in MDL when none is configured: half the smallest positive value of each species.

    Not a laboratory value: the stage says so in the report and asks for real MDLs.
    """
    x = _as_frame(concentration, "concentration")
    out = {}
    for c in x.columns:
        v = x[c].to_numpy(float)
        v = v[np.isfinite(v) & (v > 0)]
        if v.size == 0:
            raise ValueError(f"species {c!r} has no positive value: cannot derive a stand-in MDL")
        out[c] = 0.5 * float(v.min())
    return pd.Series(out, name="mdl")


def read_uncertainty_file(path, *, concentration: pd.DataFrame, medium: str | None = None) -> pd.DataFrame:
    """User-supplied uncertainties aligned to ``concentration`` (samples x species).

    The CSV has ``sample_id``, optionally ``medium``, and one column per species (same unit
    as the concentrations). Every sample and species of ``concentration`` must be present and
    every value positive.
    """
    u = pd.read_csv(path)
    if "sample_id" not in u.columns:
        raise ValueError(f"uncertainty file {path} needs a sample_id column, got {list(u.columns)}")
    if medium is not None and "medium" in u.columns:
        u = u[u["medium"] == medium]
    u = u.assign(sample_id=u["sample_id"].astype(str)).set_index("sample_id")
    missing_cols = [c for c in concentration.columns if c not in u.columns]
    missing_rows = [i for i in concentration.index.astype(str) if i not in u.index]
    if missing_cols or missing_rows:
        raise ValueError(f"uncertainty file {path} lacks species {missing_cols} and/or samples "
                         f"{missing_rows[:5]}{'...' if len(missing_rows) > 5 else ''}")
    out = u.loc[concentration.index.astype(str), list(concentration.columns)].astype(float)
    out.index = concentration.index
    if not (out > 0).all().all():
        raise ValueError(f"uncertainty file {path}: every uncertainty must be > 0")
    return out
