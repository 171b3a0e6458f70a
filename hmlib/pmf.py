"""Positive matrix factorization (PMF) with EPA's ``esat`` package: uncertainty, runs, errors.

The factor model is EPA PMF 5.0's [1]_ weighted non-negative factorization

.. math::

    x_{ij} = \\sum_{k=1}^{p} g_{ik} f_{kj} + e_{ij}, \\qquad
    Q = \\sum_{i=1}^{n}\\sum_{j=1}^{m} \\left(\\frac{e_{ij}}{u_{ij}}\\right)^2

solved by ``esat`` (EPA's Environmental Source Apportionment Toolkit, Rust core, version
pinned by the environment: see :data:`ESAT_VERSION`) with its least-squares NMF update
(``ls-nmf``). Each model is started from ``n_starts`` seeded random initialisations and the
start with the lowest :math:`Q_\\mathrm{robust}` is kept, as in EPA PMF 5.0 [1]_, and finished exactly.

Contributions are normalised to a mean of 1 per factor (EPA PMF 5.0 convention), so that a
profile row :math:`f_{k\\cdot}` is in the concentration unit of the data (mg/kg for solids).

Functions here are pure: they take arrays/DataFrames and return new objects; every random step
takes a ``seed``. ``esat`` objects are created with ``verbose=False`` and run serially (the
batch and bootstrap classes of esat clear the terminal and start process pools, which do not
belong in a report notebook); the random starts and the bootstrap loop are therefore written
here around :class:`esat.model.sa.SA`, esat's single-model API.

Where esat 2025.0.1 differs from the EPA PMF 5.0 definitions, the EPA procedure is written here
around esat's solver and tested against an independent computation:

* robust fit: esat's ``SA.train`` minimises Q(true); :func:`fit_pmf` reweights values with scaled
  residuals beyond 4 and refits by exact weighted coordinate descent (checked against scipy minimising
  the robust Q directly);
* base run and bootstrap are fitted the same way: seeded random starts with esat, then the exact
  (robust) finish, so that the bootstrap spread includes where random starts settle along a valley of
  equally good solutions, as the base run's does (:func:`fit_pmf`, :func:`bootstrap_pmf`);
* DISP: esat holds everything but the displaced element fixed; :func:`disp_pmf` refits the rest
  of the solution (checked against a brute-force constrained refit with scipy); BS-DISP
  (:func:`bs_disp_pmf`) applies it to bootstrap solutions;
* factor count: :func:`choose_factor_count` combines the change in Q, Q/Qexp, scaled residuals,
  bootstrap mapping and DISP swaps (checked on generated data with four known sources);
* no laboratory MDL: :func:`estimated_mdl` bounds it from the smallest reported value.

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata

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
    "factor_stability",
    "scaled_residual_summary",
    "q_values",
    "estimated_mdl",
    "bs_disp_pmf",
    "BootstrapResult",
    "bootstrap_pmf",
    "disp_pmf",
    "species_diagnostics",
    "profile_table",
    "contribution_table",
    "weighted_nnls_contributions",
    "pmf_all_samples",
    "cosine_similarity_matrix",
    "match_factors",
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

    Parameters
    ----------
    concentration : pandas.DataFrame
        Concentrations, samples x species.
    uncertainty : pandas.DataFrame
        Uncertainties of the same shape, columns and unit.

    Returns
    -------
    pandas.Series
        S/N per species (dimensionless), named ``'signal_to_noise'``.

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

    Parameters
    ----------
    sn : pandas.Series
        S/N per species (see :func:`signal_to_noise`).
    bad_below : float, default 0.5
        S/N below which a species is bad.
    weak_below : float, default 1.0
        S/N below which a species is weak.
    overrides : mapping of str to str or None, optional
        Species mapped to a forced category (strong, weak or bad).

    Returns
    -------
    pandas.Series
        Category (``'strong'``, ``'weak'`` or ``'bad'``) per species.

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

    Parameters
    ----------
    concentration : pandas.DataFrame
        Concentrations, samples x species.
    uncertainty : pandas.DataFrame
        Uncertainties of the same shape and unit.
    categories : pandas.Series
        Category per species (see :func:`species_categories`); missing species count as strong.

    Returns
    -------
    tuple of (pandas.DataFrame, pandas.DataFrame)
        Concentration and uncertainty matrices of the kept species.

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

    Parameters
    ----------
    n_samples : int
        Number of samples n.
    n_strong : int
        Number of strong species.
    n_species : int
        Number of species in the model m.
    n_factors : int
        Number of factors p.

    Returns
    -------
    float
        Expected Q (> 0).

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
    q_true, q_robust : Q of the final solution (robust: scaled residuals beyond 4 enter as
        :math:`4|r|` instead of :math:`r^2`), see :func:`q_values`.
    robust_uncertainty : uncertainties after the robust reweighting (equal to ``uncertainty``
        for values that were not down-weighted); DISP and bootstrap use them.
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
    robust_uncertainty: pd.DataFrame | None = None

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


def _pool_map(func, jobs: list, n_jobs: int) -> list:
    """``[func(j) for j in jobs]``, in a fork process pool when ``n_jobs`` > 1 (order kept)."""
    if n_jobs > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(processes=min(int(n_jobs), len(jobs))) as pool:
            return pool.map(func, jobs, chunksize=1)
    return [func(j) for j in jobs]


def _start_run(args):
    """One random start of :func:`fit_pmf` (top-level so that a process pool can pickle it)."""
    V, U, p, sd, max_iter, converge_delta, converge_n = args
    sa = _train_sa(V, U, n_factors=p, seed=sd, H0=None, max_iter=max_iter, converge_delta=converge_delta,
                   converge_n=converge_n)
    row = {"q_true": float(sa.Qtrue), "q_robust": float(sa.Qrobust), "converged": bool(sa.converged),
           "steps": int(sa.converge_steps)}
    return sd, row, np.asarray(sa.W, float), np.asarray(sa.H, float)


def fit_pmf(concentration: pd.DataFrame, uncertainty: pd.DataFrame, *, n_factors: int, seed: int,
            n_starts: int = 20, n_strong: int | None = None, max_iter: int = 20000, converge_delta: float = 0.1,
            converge_n: int = 100, robust: bool = True, robust_alpha: float = 4.0,
            robust_rounds: int = 10, n_jobs: int = 1) -> PMFResult:
    """Fit PMF with ``n_starts`` seeded random starts, keep the lowest Q, then fit robustly [1]_.

    esat 2025.0.1's ``SA.train`` minimises Q(true) (its ``robust_mode`` is not used by the
    ``ls-nmf`` path) and stops when Q changes by less than ``converge_delta`` over ``converge_n``
    iterations, whereas EPA PMF 5.0 fits robustly. The robust fit is therefore written here as
    iteratively reweighted least squares solved by exact weighted coordinate descent: values whose
    scaled residual exceeds ``robust_alpha`` get the uncertainty :math:`u_{ij}\\sqrt{|r_{ij}|/\\alpha}`
    (so that their term in Q is :math:`\\alpha |r_{ij}|`, EPA's robust Q), the solution is refitted,
    and this repeats until the set of down-weighted values no longer changes (at most
    ``robust_rounds`` rounds).

    The start with the lowest esat Q(robust) (EPA PMF 5.0's rule) is finished by that exact (robust)
    fit, as every bootstrap run is (:func:`bootstrap_pmf`). A PMF minimum is often a valley rather
    than a point: factors can be mixed (rotated) at equal Q while all values stay non-negative, and
    starts settle at different places along it; bootstrap runs started and finished as the base
    run's starts are cover those places, and so the base run. Q(true) and Q(robust) of the final
    solution are both reported (:func:`q_values`, with the data uncertainties).

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
    robust : fit robustly (EPA PMF 5.0 default); False keeps esat's Q(true) minimum.
    robust_alpha : scaled-residual threshold of the robust fit (EPA: 4).
    robust_rounds : largest number of reweighting rounds.
    n_jobs : worker processes for the random starts (the result does not depend on it).

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
    fitted = _pool_map(_start_run, [(V, U, n_factors, int(sd), max_iter, converge_delta, converge_n)
                                    for sd in seeds], n_jobs)
    for s, (sd, row, W_s, H_s) in enumerate(fitted):
        rows.append({"start": s + 1, "seed": sd, **row})
        if best is None or row["q_robust"] < best[1]:
            best = (sd, row["q_robust"], W_s, H_s)
    sd, _, W, H = best
    # the best start finished by exact weighted coordinate descent (robustly when asked), as every bootstrap run
    # is (:func:`_refit`)
    W, H, u_rob, n_down, rounds = _finish(V, U, W, H, robust=robust, alpha=robust_alpha, max_rounds=robust_rounds)
    W, H = _normalise(W, H)
    qt, qr = q_values(V, U, W, H, alpha=robust_alpha)
    factors = [f"F{k + 1}" for k in range(n_factors)]
    m_strong = x.shape[1] if n_strong is None else n_strong
    return PMFResult(
        profiles=pd.DataFrame(H, index=factors, columns=x.columns),
        contributions=pd.DataFrame(W, index=x.index, columns=factors),
        data=x.copy(), uncertainty=u.copy(), n_factors=n_factors, q_true=qt, q_robust=qr,
        q_expected=q_expected(n_samples=x.shape[0], n_strong=m_strong, n_species=x.shape[1], n_factors=n_factors),
        starts=pd.DataFrame(rows), best_seed=sd,
        settings={"max_iter": max_iter, "converge_delta": converge_delta, "converge_n": converge_n,
                  "method": "ls-nmf", "esat": ESAT_VERSION, "n_starts": n_starts, "seed": seed,
                  "robust": robust, "robust_alpha": robust_alpha, "robust_rounds": rounds,
                  "n_downweighted": n_down, "robust_rounds_max": robust_rounds},
        robust_uncertainty=pd.DataFrame(u_rob, index=x.index, columns=x.columns),
    )


def scan_factor_counts(concentration: pd.DataFrame, uncertainty: pd.DataFrame, *, factor_counts, seed: int,
                       n_starts: int = 20, n_strong: int | None = None,
                       **solver) -> tuple[pd.DataFrame, dict[int, PMFResult]]:
    """Fit PMF for each factor count; table of Q(true), Q(robust), Q(expected) and Q/Q(exp).

    Returns the table (one row per factor count) and the fitted results keyed by factor count.
    Factor count *p* uses seed ``seed + p`` so each count is reproducible on its own.

    Parameters
    ----------
    concentration : pandas.DataFrame
        Concentrations, samples x species.
    uncertainty : pandas.DataFrame
        Uncertainties of the same shape and unit.
    factor_counts : iterable of int
        Factor counts to fit.
    seed : int
        Base random seed.
    n_starts : int, default 20
        Random starts per factor count.
    n_strong : int or None, optional
        Number of strong species for Q(expected); None counts all species.
    **solver
        Further keyword arguments of :func:`fit_pmf`.

    Returns
    -------
    tuple of (pandas.DataFrame, dict of int to PMFResult)
        Table with n_factors, q_true, q_robust, q_expected, q_true_over_expected,
        q_robust_over_expected, converged_starts, n_starts; and the fits keyed by factor count.
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


def choose_factor_count(scan: pd.DataFrame, *, n_samples: int, n_species: int, dq_units_min: float = 2.0,
                        stability: pd.DataFrame | None = None, mapping_min: float = 0.8) -> tuple[int, str, pd.DataFrame]:
    """Factor count from a scan by several EPA PMF 5.0 criteria [1]_ (sec. 6.3-7).

    1. **Change in Q.** A factor that only fits noise lowers Q by about the number of values it
       adds, :math:`n + m`, in units of the actual noise; real structure lowers it by much more. The
       noise level relative to the stated uncertainties is estimated from the largest count,
       :math:`s = Q_\\mathrm{robust}(p_\\max)/Q_\\mathrm{exp}(p_\\max)` (so the rule does not depend on
       whether the uncertainties are over- or understated, unlike a fixed Q/Qexp target), and
       the p-th factor is supported when

       .. math:: \\Delta Q_p / (s\\,(n + m)) \\ge d, \\qquad \\Delta Q_p = Q_\\mathrm{robust}(p-1) - Q_\\mathrm{robust}(p)

       with :math:`d` = ``dq_units_min`` (2). The candidate is the largest count reached through
       supported steps from the smallest count of the range.
    2. **Stability** (when ``stability`` is given, rows n_factors, bs_min_mapping,
       disp_swaps_dq4): the candidate must have every factor mapped in at least ``mapping_min``
       of the bootstrap runs (EPA: 80 %) and no DISP swap at dQmax = 4 (EPA: swaps at the
       smallest dQmax mean the solution is not well defined); otherwise the next smaller count
       that meets both is taken.

    Q/Qexp and the share of scaled residuals beyond 3 are reported with the other criteria.

    Parameters
    ----------
    scan : one row per count: n_factors, q_true, q_robust, q_expected (:func:`scan_factor_counts`).
    n_samples, n_species : n and m of the data.
    dq_units_min : d above.
    stability : optional stability table (see 2.).
    mapping_min : smallest acceptable bootstrap mapping share.

    Returns
    -------
    (count, reason, criteria): the count, a sentence saying why, and the scan with the columns
    dq_robust, dq_units, supported, and the stability columns when given.

    References
    ----------
    .. [1] Norris et al. (2014) EPA PMF 5.0 Fundamentals and User Guide, EPA/600/R-14/108.
    .. [2] Paatero et al. (2014) Atmos. Meas. Tech. 7, 781-797. https://doi.org/10.5194/amt-7-781-2014
    """
    s = scan.sort_values("n_factors").reset_index(drop=True).copy()
    top = s.iloc[-1]
    scale = float(top["q_robust"] / top["q_expected"])
    s["dq_robust"] = -s["q_robust"].diff()
    s["dq_units"] = s["dq_robust"] / (scale * (n_samples + n_species))
    s["supported"] = s["dq_units"] >= dq_units_min
    s.loc[0, "supported"] = True
    cand_i = 0
    for i in range(1, len(s)):
        if not s.loc[i, "supported"]:
            break
        cand_i = i
    p = int(s.loc[cand_i, "n_factors"])
    why = (f"{p} factors: each added factor up to {p} lowered Q(robust) by at least {dq_units_min:g} times the "
           f"n + m values it adds (noise level from the largest model, Q/Qexp = {scale:.2f})")
    if cand_i + 1 < len(s):
        nxt = s.loc[cand_i + 1]
        why += (f"; factor {int(nxt['n_factors'])} lowered it by only {nxt['dq_units']:.1f} times, as expected "
                "from fitting noise")
    else:
        why += "; the largest count of the range was reached, so a larger count was not tested"
    if stability is not None and len(stability):
        st = stability.set_index("n_factors")
        s = s.merge(stability, on="n_factors", how="left")

        def stable(q):
            if q not in st.index:
                return None
            return bool(st.loc[q, "bs_min_mapping"] >= mapping_min and st.loc[q, "disp_swaps_dq4"] == 0)

        q = p
        while q >= int(s["n_factors"].min()) and stable(q) is False:
            q -= 1
        if q != p and stable(q):
            why += (f"; but {p} factors were not stable (bootstrap mapping "
                    f"{100 * st.loc[p, 'bs_min_mapping']:.0f} %, DISP swaps at dQmax 4: "
                    f"{int(st.loc[p, 'disp_swaps_dq4'])}), so {q} factors, the largest stable count, were kept")
            p = q
        elif stable(p):
            why += (f"; the solution is stable (every factor mapped in at least "
                    f"{100 * st.loc[p, 'bs_min_mapping']:.0f} % of the bootstrap runs, no DISP swap at dQmax 4)")
        elif stable(p) is False:
            why += (f"; no smaller count was stable either, so {p} factors are kept with that caveat (bootstrap "
                    f"mapping {100 * st.loc[p, 'bs_min_mapping']:.0f} %, DISP swaps at dQmax 4: "
                    f"{int(st.loc[p, 'disp_swaps_dq4'])})")
    return p, why, s


def factor_stability(result: PMFResult, *, n_boot: int, seed: int, threshold: float = 0.6,
                     block_size: int | None = None, n_jobs: int = 1) -> dict:
    """Stability of one factor count for :func:`choose_factor_count`: the smallest bootstrap mapping
    share over factors (``n_boot`` runs) and the number of DISP swaps at dQmax = 4.

    Parameters
    ----------
    result : PMFResult
        Base run of one factor count.
    n_boot : int
        Number of bootstrap runs.
    seed : int
        Random seed of the bootstrap.
    threshold : float, default 0.6
        Minimum Pearson r to map a bootstrap factor.
    block_size : int or None, optional
        Block length of the block bootstrap; None resamples single samples.
    n_jobs : int, default 1
        Worker processes for the bootstrap runs (the result does not depend on it).

    Returns
    -------
    dict n_factors, bs_min_mapping, disp_swaps_dq4.
    """
    bs = bootstrap_pmf(result, n_runs=n_boot, seed=seed, threshold=threshold, block_size=block_size, n_jobs=n_jobs)
    d = disp_pmf(result, dq_max=(4,), n_bisect=1)
    return {"n_factors": result.n_factors, "bs_min_mapping": float(bs.mapping["mapping_share"].min()),
            "disp_swaps_dq4": int(d["swaps"]["n_swaps"].sum())}


def scaled_residual_summary(fits: Mapping[int, PMFResult]) -> pd.DataFrame:
    """Distribution of the scaled residuals per factor count: quartiles, share beyond |3|.

    Parameters
    ----------
    fits : mapping of int to PMFResult
        Fitted results keyed by factor count.

    Returns
    -------
    DataFrame n_factors, q25, median, q75, share_abs_gt3.
    """
    rows = []
    for p, r in sorted(fits.items()):
        v = r.scaled_residuals.to_numpy(float).ravel()
        rows.append({"n_factors": p, "q25": float(np.quantile(v, 0.25)), "median": float(np.median(v)),
                     "q75": float(np.quantile(v, 0.75)), "share_abs_gt3": float(np.mean(np.abs(v) > 3))})
    return pd.DataFrame(rows)


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
    """One bootstrap run (top-level so that a process pool can pickle it): a seeded random start on the
    resampled data, finished as the base run's starts are (:func:`_refit`)."""
    V, U, idx, run_seed, Hb, Wb, p, st = args
    W, H, *_ = _refit(V[idx], U[idx], None, n_factors=p, seed=run_seed, max_iter=st.get("max_iter", 20000),
                      converge_delta=st.get("converge_delta", 0.1), converge_n=st.get("converge_n", 100),
                      robust=st.get("robust", False), alpha=st.get("robust_alpha", 4.0),
                      max_rounds=st.get("robust_rounds_max", 10))
    return W, H, q_values(V[idx], U[idx], W, H, alpha=st.get("robust_alpha", 4.0))[1]


def bootstrap_pmf(result: PMFResult, *, n_runs: int = 100, seed: int, threshold: float = 0.6,
                  block_size: int | None = None, n_jobs: int = 1) -> BootstrapResult:
    """Bootstrap a PMF base run: resample samples, refit, map factors by contributions.

    Each run resamples the samples with replacement (single samples when ``block_size`` is
    None, which suits spatial surveys without a sampling order; else overlapping blocks of that
    many consecutive samples as in EPA PMF 5.0), refits the model from a seeded random start exactly
    as the base run's starts are fitted and finished (esat, then exact coordinate descent, robustly
    when the base run was robust), and maps each bootstrap factor to the base factor whose
    contributions (of the same resampled samples) correlate best with it, if Pearson r >=
    ``threshold`` (EPA PMF 5.0 default 0.6) [1]_. A base factor is *mapped* in a run when at least
    one bootstrap factor maps to it; its profile in that run is the mapped factor with the highest r.

    EPA PMF 5.0 starts its runs from the base profiles. Here they start like the base run's starts:
    where the factors can be mixed at equal Q, starting from the base profiles with re-initialised
    contributions let the runs settle at another place along that valley than the base run (on
    Meuse, 0 % of the Pb on a factor in the base run and 38-45 % in every run, at the same Q; on
    generated data the runs then excluded the true profiles), so that the base value lay outside its
    own interval. Starting the runs as the base run starts makes the interval cover where equally
    good solutions settle, rotational spread included, and the base run one of them.

    All resampling indices and run seeds are drawn up front from ``default_rng(seed)``, so the
    result does not depend on ``n_jobs`` (runs in a process pool when ``n_jobs`` > 1).

    Parameters
    ----------
    result : PMFResult
        Base run to bootstrap.
    n_runs : int, default 100
        Number of bootstrap runs.
    seed : int
        Random seed.
    threshold : float, default 0.6
        Minimum Pearson r of contributions to map a bootstrap factor to a base factor.
    block_size : int or None, optional
        Block length of the block bootstrap; None resamples single samples.
    n_jobs : int, default 1
        Number of worker processes.

    Returns
    -------
    BootstrapResult
        Bootstrap profiles (run, factor, species, concentration), mapping table and Q(robust) per run.

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
    fitted = _pool_map(_bootstrap_run, jobs, n_jobs)
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


def q_values(V, U, W, H, *, alpha: float = 4.0) -> tuple[float, float]:
    """Q(true) and Q(robust) of a solution (EPA PMF 5.0 [1]_, sec. 6.1).

    .. math::

        r_{ij} = \\frac{x_{ij} - \\sum_k g_{ik} f_{kj}}{u_{ij}}, \\qquad
        Q_\\mathrm{true} = \\sum_{ij} r_{ij}^2, \\qquad
        Q_\\mathrm{robust} = \\sum_{ij} \\begin{cases} r_{ij}^2 & |r_{ij}| \\le \\alpha \\\\
        \\alpha |r_{ij}| & |r_{ij}| > \\alpha \\end{cases}

    Parameters
    ----------
    V, U : data and uncertainty arrays (samples x species).
    W, H : contributions (samples x factors) and profiles (factors x species).
    alpha : robust threshold (EPA: 4).

    Returns
    -------
    (q_true, q_robust)
    """
    r = (np.asarray(V, float) - np.asarray(W, float) @ np.asarray(H, float)) / np.asarray(U, float)
    a = np.abs(r)
    return float(np.sum(r * r)), float(np.sum(np.where(a <= alpha, r * r, alpha * a)))


def _finish(V, U, W, H, *, robust: bool, alpha: float, max_rounds: int, max_sweeps: int = 3000,
            tol: float = 1e-10):
    """Finish a solution by exact weighted coordinate descent (:func:`_hals`), robustly when asked.

    esat's stopping rule (Q change < converge_delta over converge_n steps) can stop a run well above its
    minimum (Q 40 % above the base's on generated data, for a run started from random contributions), so every
    solution is finished here with the same exact method. The robust fit (EPA PMF 5.0) is iteratively reweighted
    least squares: values whose scaled residual exceeds ``alpha`` get the uncertainty
    :math:`u_{ij}\\sqrt{|r_{ij}|/\\alpha}` (their term in Q becomes EPA's :math:`\\alpha |r_{ij}|`) and the
    solution is refitted, until the set of down-weighted values no longer changes (at most ``max_rounds``).

    Returns W, H, the uncertainties of the last fit, the number of values beyond ``alpha`` and the rounds.
    """
    u_fit, down_prev, rounds = U, None, 0
    for rounds in range(1, (max_rounds if robust else 1) + 1):  # noqa: B007 - the count is returned
        if robust:
            r = np.abs((V - W @ H) / U)
            down = r > alpha
            if down_prev is not None and np.array_equal(down, down_prev):
                break
            u_fit = np.where(down, U * np.sqrt(np.maximum(r, alpha) / alpha), U)
            down_prev = down
        W, H, _ = _hals(V, 1.0 / u_fit ** 2, W, H, max_sweeps=max_sweeps, tol=tol)
    return W, H, u_fit, int((np.abs((V - W @ H) / U) > alpha).sum()), rounds


def _refit(V, U, H0, *, n_factors: int, seed: int, max_iter: int, converge_delta: float, converge_n: int,
           robust: bool, alpha: float, max_rounds: int):
    """esat from seeded random contributions (and random profiles when ``H0`` is None), then :func:`_finish`;
    contributions normalised to mean 1."""
    sa = _train_sa(V, U, n_factors=n_factors, seed=seed, H0=H0, W0=None, max_iter=max_iter,
                   converge_delta=converge_delta, converge_n=converge_n)
    W, H, u_fit, n_down, rounds = _finish(V, U, np.asarray(sa.W, float), np.asarray(sa.H, float), robust=robust,
                                          alpha=alpha, max_rounds=max_rounds)
    W, H = _normalise(W, H)
    return W, H, u_fit, n_down, rounds


def estimated_mdl(concentration: pd.DataFrame) -> pd.Series:
    """Detection limit estimated from the data when the laboratory gives none.

    A laboratory reports a value only above its limit of quantification, conventionally
    LOQ = 10 sigma of the blank and LOD (MDL) = 3.3 sigma (ICH Q2(R1); IUPAC), so the smallest
    reported positive value of a species is at least the LOQ and the MDL at most 0.33 of it:

    .. math:: \\widehat{\\mathrm{MDL}}_j = \\tfrac{3.3}{10}\\, \\min_i \\{x_{ij} > 0\\}

    Using this upper bound keeps the MDL term of the EPA uncertainty (equation 5-2) no larger
    than the data allow: the uncertainty is dominated by the error fraction and not inflated
    (half the minimum, used before, put values near the minimum at an uncertainty above 25 %).
    The report flags that the MDLs were estimated.

    Parameters
    ----------
    concentration : samples x species.

    Returns
    -------
    Series species -> estimated MDL (unit of the data).

    References
    ----------
    ICH (2005) Validation of analytical procedures Q2(R1), sec. 6-7.
    https://database.ich.org/sites/default/files/Q2%28R1%29%20Guideline.pdf
    """
    x = _as_frame(concentration, "concentration")
    out = {}
    for c in x.columns:
        v = x[c].to_numpy(float)
        v = v[np.isfinite(v) & (v > 0)]
        if v.size == 0:
            raise ValueError(f"species {c!r} has no positive value: cannot estimate a detection limit")
        out[c] = 0.33 * float(v.min())
    return pd.Series(out, name="mdl")


def _hals(V, Wt, W, H, *, fixed: tuple[int, int, float] | None = None, max_sweeps: int = 500,
          tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray, float]:
    """Weighted non-negative least squares :math:`\\min \\sum w_{ij}(x_{ij} - (GF)_{ij})^2` by exact block
    coordinate descent (weighted HALS; Cichocki & Phan 2009), optionally with one profile element
    ``fixed = (k, j, value)`` held. Written here because esat cannot hold single elements, which
    EPA DISP needs; each column of G and row of F is updated in closed form (the weighted
    objective separates over samples for G and over species for F).

    References
    ----------
    Cichocki, A., Phan, A.-H. (2009) Fast local algorithms for large scale nonnegative matrix and
    tensor factorizations. IEICE Trans. Fundamentals E92-A:708-721. doi:10.1587/transfun.E92.A.708
    """
    W = np.array(W, float)
    H = np.array(H, float)
    fk, fj, fv = (-1, -1, 0.0) if fixed is None else (int(fixed[0]), int(fixed[1]), float(fixed[2]))
    # compiled with numba (a dependency of shap, already installed): DISP needs thousands of refits
    q = _hals_kernel(np.ascontiguousarray(V, dtype=float), np.ascontiguousarray(Wt, dtype=float), W, H, fk, fj, fv,
                     int(max_sweeps), float(tol))
    return W, H, float(q)


def _hals_sweeps_py(V, Wt, W, H, fk, fj, fv, max_sweeps, tol):
    """The coordinate-descent sweeps of :func:`_hals` (updates W and H in place, returns Q)."""
    n, m = V.shape
    p = H.shape[0]
    eps = 1e-300
    if fk >= 0:
        H[fk, fj] = fv
    R = V - W @ H
    q_old = 0.0
    for i in range(n):
        for j in range(m):
            q_old += Wt[i, j] * R[i, j] * R[i, j]
    num = np.empty(n)
    den = np.empty(n)
    numh = np.empty(m)
    denh = np.empty(m)
    for _ in range(max_sweeps):
        for k in range(p):
            for i in range(n):
                a = 0.0
                b = 0.0
                for j in range(m):
                    R[i, j] += W[i, k] * H[k, j]
                    a += Wt[i, j] * R[i, j] * H[k, j]
                    b += Wt[i, j] * H[k, j] * H[k, j]
                num[i] = a
                den[i] = max(b, eps)
            if k == fk:
                # the displaced factor keeps its scale (contributions of mean 1, EPA's normalisation);
                # otherwise rescaling the factor would undo any displacement at no cost in Q
                order = np.argsort(-num)
                ca = 0.0
                cb = 0.0
                lam = 0.0
                for t in range(n):
                    ca += num[order[t]] / den[order[t]]
                    cb += 1.0 / den[order[t]]
                    lam = (ca - n) / cb
                    nxt = num[order[t + 1]] if t + 1 < n else -np.inf
                    if lam >= nxt and lam <= num[order[t]]:
                        break
                for i in range(n):
                    W[i, k] = max((num[i] - lam) / den[i], 0.0)
            else:
                for i in range(n):
                    W[i, k] = max(num[i] / den[i], 0.0)
            for j in range(m):
                a = 0.0
                b = 0.0
                for i in range(n):
                    a += Wt[i, j] * R[i, j] * W[i, k]
                    b += Wt[i, j] * W[i, k] * W[i, k]
                numh[j] = a
                denh[j] = max(b, eps)
            for j in range(m):
                H[k, j] = max(numh[j] / denh[j], 0.0)
            if k == fk:
                H[k, fj] = fv
            for i in range(n):
                for j in range(m):
                    R[i, j] -= W[i, k] * H[k, j]
        q = 0.0
        for i in range(n):
            for j in range(m):
                q += Wt[i, j] * R[i, j] * R[i, j]
        if q_old - q <= tol * max(q, 1.0):
            q_old = q
            break
        q_old = q
    return q_old


try:
    from numba import njit

    _hals_kernel = njit(cache=True, nogil=True)(_hals_sweeps_py)
except ImportError:  # pragma: no cover - numba comes with shap
    _hals_kernel = _hals_sweeps_py


def _swapped(H_new: np.ndarray, H_base: np.ndarray) -> bool:
    """A factor swap: some refitted profile correlates (Pearson) best with another base factor."""
    p = H_base.shape[0]
    r = np.corrcoef(np.vstack([H_new, H_base]))[:p, p:]
    r = np.nan_to_num(r, nan=-1.0)
    return bool(np.any(r.argmax(axis=1) != np.arange(p)))


DQ_MAX = (4, 8, 16, 32)
BS_DISP_DQ_MAX = (0.5, 1, 2, 4)


def _disp_arrays(V, U, W, H, *, dq_max, n_bisect: int = 3, max_sweeps: int = 300, tol: float = 1e-6):
    """DISP on arrays; returns (rows of k, j, dq, lo, hi, swap_lo, swap_hi), base Q."""
    Wt = 1.0 / (U * U)
    W0, H0, q0 = _hals(V, Wt, W, H, max_sweeps=20 * max_sweeps, tol=1e-10)  # dQ relative to the optimum
    p, m = H0.shape
    top = max(dq_max)
    out = []
    for k in range(p):
        for j in range(m):
            h0 = H0[k, j]
            scale = max(h0, 0.02 * H0[:, j].max(), 1e-12)
            res = {}
            for up in (True, False):
                # grid of displaced values, each refitted from the previous (warm start)
                if up:
                    grid = [h0 + scale * f for f in (0.03, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 10.0, 30.0)]
                else:
                    grid = [h0 * f for f in (0.97, 0.9, 0.75, 0.5, 0.25, 0.0)] if h0 > 0 else []
                pts = [(h0, 0.0, W0, H0)]
                Wc, Hc = W0, H0
                for v in grid:
                    Wc, Hc, q = _hals(V, Wt, Wc, Hc, fixed=(k, j, v), max_sweeps=max_sweeps, tol=tol)
                    pts.append((v, q - q0, Wc, Hc))
                    if q - q0 > top:
                        break
                for dq in dq_max:
                    # last grid point within dq, then bisection towards the first point beyond it
                    inside = [pt for pt in pts if pt[1] <= dq]
                    beyond = [pt for pt in pts if pt[1] > dq]
                    a = inside[-1] if not up else max(inside, key=lambda t: t[0])
                    if up:
                        b = min((pt for pt in beyond if pt[0] > a[0]), key=lambda t: t[0], default=None)
                    else:
                        a = min(inside, key=lambda t: t[0])
                        b = max((pt for pt in beyond if pt[0] < a[0]), key=lambda t: t[0], default=None)
                    if b is not None:
                        for _ in range(n_bisect):
                            v = 0.5 * (a[0] + b[0])
                            Wm, Hm, q = _hals(V, Wt, a[2], a[3], fixed=(k, j, v), max_sweeps=max_sweeps, tol=tol)
                            pt = (v, q - q0, Wm, Hm)
                            if pt[1] <= dq:
                                a = pt
                            else:
                                b = pt
                    res[(up, dq)] = (a[0], _swapped(a[3], H0))
            for dq in dq_max:
                out.append((k, j, dq, res[(False, dq)][0] if (False, dq) in res else h0, res[(True, dq)][0],
                            res.get((False, dq), (h0, False))[1], res[(True, dq)][1]))
    return out, q0, H0


def disp_pmf(result: PMFResult, *, dq_max=DQ_MAX, n_bisect: int = 4, max_sweeps: int = 500) -> dict[str, pd.DataFrame]:
    """Displacement (DISP) error estimates as defined for EPA PMF 5.0 / ME-2 [1]_ [2]_.

    For every factor *k*, species *j* and dQmax in (4, 8, 16, 32), the profile element
    :math:`f_{kj}` is held at displaced values while **the rest of the solution (all
    contributions and every other profile element) is refitted**; the interval is the range of
    :math:`f_{kj}` over which the refitted Q rises by at most dQmax above the base Q (Paatero et
    al. 2014, sec. 3). esat 2025.0.1's ``Displacement`` holds everything else fixed instead,
    which cannot show rotational ambiguity, so the refit is written here (weighted HALS compiled
    with numba, the same weighted least-squares objective as esat's solver, with the robust
    uncertainties of the base run; the displaced factor keeps contributions of mean 1, since
    otherwise rescaling it would undo any displacement at no cost in Q); the displaced values are searched on a geometric grid, each refit warm-started
    from the previous one, then refined by ``n_bisect`` bisection steps per dQmax. A *swap* is
    counted when, at the displaced bound, a refitted profile correlates best with another base
    factor; ``swaps`` gives per factor and dQmax the count over its 2 x species displacements
    (EPA's swap table).

    Parameters
    ----------
    result : the base run.
    dq_max : dQmax levels (EPA: 4, 8, 16, 32).
    n_bisect : bisection steps per level.
    max_sweeps : largest number of coordinate-descent sweeps per refit.

    Returns
    -------
    dict with ``intervals`` (dQmax, factor, species, concentration, conc_min, conc_max,
    percent, percent_min, percent_max; concentrations in the data unit with contributions of
    mean 1) and ``swaps`` (dQmax, factor, n_swaps, n_displacements, swap_percent).

    References
    ----------
    .. [1] Paatero et al. (2014) Atmos. Meas. Tech. 7, 781-797. https://doi.org/10.5194/amt-7-781-2014
    .. [2] Norris et al. (2014) EPA PMF 5.0 Fundamentals and User Guide, EPA/600/R-14/108, sec. 7.
    """
    V = result.data.to_numpy(np.float64)
    U = (result.robust_uncertainty if result.robust_uncertainty is not None else result.uncertainty).to_numpy(np.float64)
    rows_raw, _, H0 = _disp_arrays(V, U, result.contributions.to_numpy(float), result.profiles.to_numpy(float),
                                   dq_max=dq_max, n_bisect=n_bisect, max_sweeps=max_sweeps)
    return _disp_tables(rows_raw, result.profiles, H0, dq_max)


def _disp_tables(rows_raw, profiles: pd.DataFrame, H0, dq_max) -> dict[str, pd.DataFrame]:
    factors, species = list(profiles.index), list(profiles.columns)
    H = profiles.to_numpy(float)
    rows = []
    nsw = {}
    for k, j, dq, lo, hi, sw_lo, sw_hi in rows_raw:
        col = H[:, j]
        pct = []
        for v in (lo, hi):
            c = col.copy()
            c[k] = v
            pct.append(100 * v / c.sum() if c.sum() > 0 else np.nan)
        rows.append({"dQmax": dq, "factor": factors[k], "species": species[j], "concentration": H[k, j],
                     "conc_min": min(lo, H[k, j]), "conc_max": max(hi, H[k, j]),
                     "percent": 100 * H[k, j] / col.sum() if col.sum() > 0 else np.nan,
                     "percent_min": pct[0], "percent_max": pct[1]})
        nsw[(dq, k)] = nsw.get((dq, k), 0) + int(sw_lo) + int(sw_hi)
    m = len(species)
    sw = [{"dQmax": dq, "factor": f, "n_swaps": nsw.get((dq, k), 0), "n_displacements": 2 * m,
           "swap_percent": 100 * nsw.get((dq, k), 0) / (2 * m)} for dq in dq_max for k, f in enumerate(factors)]
    return {"intervals": pd.DataFrame(rows), "swaps": pd.DataFrame(sw)}


def _bs_disp_run(args):
    """One BS-DISP run: bootstrap refit, factor mapping, displacement (None when a factor is unmapped)."""
    V, U, Ur, idx, run_seed, Hb, Wb, p, st, threshold, dq_max, n_bisect, max_sweeps = args
    W, H, _ = _bootstrap_run((V, U, idx, run_seed, Hb, Wb, p, st))
    order = _map_by_contributions(W, Wb[idx], threshold)
    if order is None:
        return None
    rows_raw, _, _ = _disp_arrays(V[idx], Ur[idx], W[:, order], H[order], dq_max=dq_max, n_bisect=n_bisect,
                                  max_sweeps=max_sweeps)
    return rows_raw


def bs_disp_pmf(result: PMFResult, *, n_runs: int = 20, seed: int, dq_max=BS_DISP_DQ_MAX, threshold: float = 0.6,
                block_size: int | None = None, n_bisect: int = 3, max_sweeps: int = 300,
                n_jobs: int = 1) -> dict[str, pd.DataFrame]:
    """BS-DISP: DISP applied to bootstrap solutions (Paatero et al. 2014 [1]_, sec. 4; EPA PMF 5.0 [2]_).

    Each run resamples the samples and refits them (as :func:`bootstrap_pmf`), orders the bootstrap
    factors by contribution correlation with the base factors (runs in which a base factor is not mapped are counted as unmapped and
    skipped), and displaces every profile element of the bootstrap solution with the rest refitted,
    at the BS-DISP dQmax levels (EPA: 0.5, 1, 2, 4). The interval of each element is the range over
    all runs of the displaced bounds; swaps are counted as in :func:`disp_pmf`, over all runs.

    Parameters
    ----------
    result : PMFResult
        Base run.
    n_runs : int, default 20
        Number of bootstrap runs.
    seed : int
        Random seed.
    dq_max : sequence of float, default (0.5, 1, 2, 4)
        dQmax levels of the displacement.
    threshold : float, default 0.6
        Minimum Pearson r of contributions to map a bootstrap factor.
    block_size : int or None, optional
        Block length of the block bootstrap; None resamples single samples.
    n_bisect : int, default 3
        Bisection steps per displacement.
    max_sweeps : int, default 300
        Maximum solver sweeps per refit.
    n_jobs : int, default 1
        Worker processes for the runs (the result does not depend on it).

    Returns
    -------
    dict with ``intervals`` (dQmax, factor, species, concentration, conc_min, conc_max),
    ``swaps`` (dQmax, factor, n_swaps, n_displacements, swap_percent) and ``runs`` (run,
    mapped: whether every base factor was mapped and the run was displaced).

    References
    ----------
    .. [1] Paatero et al. (2014) Atmos. Meas. Tech. 7, 781-797. https://doi.org/10.5194/amt-7-781-2014
    .. [2] Norris et al. (2014) EPA PMF 5.0 Fundamentals and User Guide, EPA/600/R-14/108, sec. 7.
    """
    V = result.data.to_numpy(np.float64)
    U = result.uncertainty.to_numpy(np.float64)
    Ur = (result.robust_uncertainty if result.robust_uncertainty is not None else result.uncertainty).to_numpy(float)
    Wb, Hb = result.contributions.to_numpy(float), result.profiles.to_numpy(float)
    n, p = Wb.shape
    rng = np.random.default_rng(seed)
    factors, species = list(result.profiles.index), list(result.profiles.columns)
    lo = {}
    hi = {}
    nsw: dict = {}
    ndisp: dict = {}
    runs = []
    jobs = []
    for _ in range(n_runs):
        idx = _resample_index(n, rng, block_size)
        jobs.append((V, U, Ur, idx, int(rng.integers(0, 2**31 - 1)), Hb, Wb, p, dict(result.settings), threshold,
                     tuple(dq_max), n_bisect, max_sweeps))
    for run, rows_raw in enumerate(_pool_map(_bs_disp_run, jobs, n_jobs)):
        runs.append({"run": run + 1, "mapped": rows_raw is not None})
        if rows_raw is None:
            continue
        for k, j, dq, a, b, s_lo, s_hi in rows_raw:
            key = (dq, k, j)
            lo[key] = min(lo.get(key, np.inf), a)
            hi[key] = max(hi.get(key, -np.inf), b)
            nsw[(dq, k)] = nsw.get((dq, k), 0) + int(s_lo) + int(s_hi)
            ndisp[(dq, k)] = ndisp.get((dq, k), 0) + 2
    rows = [{"dQmax": dq, "factor": factors[k], "species": species[j], "concentration": Hb[k, j],
             "conc_min": min(lo[(dq, k, j)], Hb[k, j]), "conc_max": max(hi[(dq, k, j)], Hb[k, j])}
            for (dq, k, j) in lo]
    sw = [{"dQmax": dq, "factor": f, "n_swaps": nsw.get((dq, k), 0), "n_displacements": ndisp.get((dq, k), 0),
           "swap_percent": 100 * nsw.get((dq, k), 0) / ndisp[(dq, k)] if ndisp.get((dq, k)) else np.nan}
          for dq in dq_max for k, f in enumerate(factors)]
    return {"intervals": pd.DataFrame(rows, columns=["dQmax", "factor", "species", "concentration", "conc_min",
                                                     "conc_max"]),
            "swaps": pd.DataFrame(sw), "runs": pd.DataFrame(runs, columns=["run", "mapped"])}


def _map_by_contributions(W: np.ndarray, base: np.ndarray, threshold: float) -> list[int] | None:
    """Bootstrap factor for each base factor by contribution correlation (one-to-one), or None."""
    from scipy.optimize import linear_sum_assignment

    p = base.shape[1]
    r = np.corrcoef(np.hstack([W, base]).T)[:p, p:]
    r = np.nan_to_num(r, nan=-1.0)
    rows, cols = linear_sum_assignment(-r)
    if np.any(r[rows, cols] < threshold):
        return None
    order = [0] * p
    for a, b in zip(rows, cols):
        order[b] = int(a)
    return order


def species_diagnostics(result: PMFResult) -> pd.DataFrame:
    """Per species: observed vs predicted r², slope, and normality of the scaled residuals.

    r² and slope from the ordinary least-squares regression of observed on predicted
    concentrations (scipy ``linregress``); residual normality by the Lilliefors (Kolmogorov-
    Smirnov with estimated mean and variance) test of the scaled residuals
    :math:`(x_{ij} - \\hat x_{ij})/u_{ij}` (statsmodels), as EPA PMF 5.0 reports a KS test per
    species [1]_; ``share_scaled_residual_gt3`` is the share of |scaled residual| > 3.

    Parameters
    ----------
    result : PMFResult
        Fitted PMF solution.

    Returns
    -------
    pandas.DataFrame
        One row per species: species, r2, slope, intercept, ks_statistic, ks_p,
        residuals_normal, share_scaled_residual_gt3.

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

    Parameters
    ----------
    result : PMFResult
        Fitted PMF solution.
    boot : BootstrapResult or None, optional
        Bootstrap result for the percentile intervals.

    Returns
    -------
    pandas.DataFrame
        Columns factor, species, concentration (species unit), percent_of_species (%), ci_low, ci_high.
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

    Parameters
    ----------
    result : PMFResult
        Fitted PMF solution.

    Returns
    -------
    pandas.DataFrame
        Columns sample_id, factor, contribution (normalised to mean 1), share (fraction 0-1).
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


def weighted_nnls_contributions(concentration: pd.DataFrame, uncertainty: pd.DataFrame, profiles: pd.DataFrame, *,
                                robust_alpha: float | None = None, robust_rounds: int = 10) -> pd.DataFrame:
    """Factor contributions of every sample for fixed profiles: per-sample weighted non-negative least squares.

    With the profiles :math:`F` (factors x species) held fixed, the PMF objective [1]_ [2]_
    separates into one independent problem per sample *i*:

    .. math::

        \\hat g_{i\\cdot} = \\arg\\min_{g \\ge 0} \\sum_{j=1}^{m}
        \\left(\\frac{x_{ij} - \\sum_{k=1}^{p} g_k f_{kj}}{u_{ij}}\\right)^2,

    a non-negative least-squares problem in the rows scaled by :math:`1/u_{ij}` (the "constrained"
    contribution estimate of EPA PMF 5.0 for samples not in the base run [1]_, sec. 5). With
    ``robust_alpha`` the values whose scaled residual exceeds it get the uncertainty
    :math:`u_{ij}\\sqrt{|r_{ij}|/\\alpha}` and the problem is solved again, until the set of
    down-weighted values stops changing (EPA's robust mode, as in :func:`fit_pmf`).

    The solution is exact and vectorised over samples: the NNLS optimum is the unconstrained
    least-squares solution on its support, so for each of the :math:`2^p - 1` factor subsets the
    least-squares solutions of all samples are computed at once (batched pseudo-inverse) and each
    sample keeps the feasible (non-negative) candidate with the lowest objective. Hand-written
    because scipy's ``optimize.nnls`` solves one sample per call (about 1 ms each in scipy 1.15,
    20 s for 20,000 samples); above 10 factors it falls back to scipy row by row.

    Parameters
    ----------
    concentration, uncertainty : pandas.DataFrame
        Samples x species (same labels; uncertainties positive).
    profiles : pandas.DataFrame
        Factors x species (the species of ``concentration``, in any order).
    robust_alpha : float or None, default None
        Scaled-residual threshold of the robust reweighting (EPA: 4); None: plain weighted NNLS.
    robust_rounds : int, default 10
        Largest number of reweighting rounds.

    Returns
    -------
    pandas.DataFrame
        Contributions, samples (index of ``concentration``) x factors (index of ``profiles``);
        ``.attrs['uncertainty']`` holds the uncertainties used last (the robust ones when robust).

    References
    ----------
    .. [1] Norris et al. (2014) EPA PMF 5.0 Fundamentals and User Guide, EPA/600/R-14/108.
    .. [2] Paatero, P., Tapper, U. (1994). Positive matrix factorization: a non-negative factor model
       with optimal utilization of error estimates of data values. Environmetrics 5, 111-126.
       https://doi.org/10.1002/env.3170050203
    """
    x = _as_frame(concentration, "concentration")
    u = _as_frame(uncertainty, "uncertainty").reindex(index=x.index, columns=x.columns)
    F = profiles.reindex(columns=x.columns).to_numpy(np.float64)
    V, U = x.to_numpy(np.float64), u.to_numpy(np.float64)
    if not (np.isfinite(V).all() and np.isfinite(U).all() and (U > 0).all() and np.isfinite(F).all()):
        raise ValueError("weighted NNLS needs finite concentrations and profiles and positive finite uncertainties")
    G, u_fit = _batched_nnls(F, V, U), U
    down_prev = None
    for _ in range(int(robust_rounds) if robust_alpha else 0):
        r = np.abs((V - G @ F) / U)
        down = r > robust_alpha
        if not down.any() or (down_prev is not None and np.array_equal(down, down_prev)):
            break
        u_fit = np.where(down, U * np.sqrt(r / robust_alpha), U)
        G = _batched_nnls(F, V, u_fit)
        down_prev = down
    out = pd.DataFrame(G, index=x.index, columns=profiles.index)
    out.attrs["uncertainty"] = pd.DataFrame(u_fit, index=x.index, columns=x.columns)
    return out


def _batched_nnls(F: np.ndarray, V: np.ndarray, U: np.ndarray) -> np.ndarray:
    """min_{g >= 0} ||(v_i - F^T g) / u_i|| for every row i (see :func:`weighted_nnls_contributions`)."""
    n, m = V.shape
    p = F.shape[0]
    A = F.T[None, :, :] / U[:, :, None]  # n x m x p, rows scaled by 1/u
    b = V / U  # n x m
    if p > 10:
        from scipy.optimize import nnls

        return np.vstack([nnls(A[i], b[i])[0] for i in range(n)]) if n else np.zeros((0, p))
    best_g = np.zeros((n, p))
    best_obj = np.einsum("ij,ij->i", b, b)  # empty support: g = 0
    M = np.einsum("ijk,ijl->ikl", A, A)  # Gram matrices A_i^T A_i
    r = np.einsum("ijk,ij->ik", A, b)
    for mask in range(1, 2 ** p):
        S = [k for k in range(p) if mask >> k & 1]
        # an optimal support with linearly independent profiles always exists (Lawson & Hanson 1974, ch. 23),
        # and scaling by 1/u does not change the rank, so dependent subsets are skipped
        if np.linalg.matrix_rank(F[S]) < len(S):
            continue
        As = A[:, :, S]
        gs = np.linalg.solve(M[:, S][:, :, S], r[:, S][:, :, None])[:, :, 0]  # least squares on the support
        ok = (gs >= -1e-10 * (np.abs(gs).max(axis=1, keepdims=True) + 1e-300)).all(axis=1)
        gs = np.maximum(gs, 0.0)
        res = b - np.einsum("ijk,ik->ij", As, gs)
        obj = np.einsum("ij,ij->i", res, res)
        better = ok & (obj < best_obj * (1 - 1e-12))
        if better.any():
            g = np.zeros((int(better.sum()), p))
            g[:, S] = gs[better]
            best_g[better] = g
            best_obj[better] = obj[better]
    return best_g


def pmf_all_samples(result: PMFResult, concentration: pd.DataFrame, uncertainty: pd.DataFrame, *,
                    n_strong: int | None = None) -> PMFResult:
    """A PMF solution fitted on a subsample, extended to every sample by weighted NNLS.

    The profiles :math:`F` of ``result`` are kept; every sample's contributions (the fitted ones
    included, so that all samples are treated alike) are the weighted non-negative least-squares
    solution of :func:`weighted_nnls_contributions`, robust when ``result`` was fitted robustly
    [1]_ [2]_. Q(true), Q(robust) and Q(expected) are those of all samples:

    .. math:: Q = \\sum_{i=1}^{N}\\sum_{j=1}^{m} \\left(\\frac{x_{ij} - \\hat g_{i\\cdot} f_{\\cdot j}}{u_{ij}}\\right)^2

    Parameters
    ----------
    result : PMFResult
        Solution fitted on the subsample.
    concentration, uncertainty : pandas.DataFrame
        All samples x species (as from :func:`pmf_input`).
    n_strong : int or None, optional
        Number of strong species for Q(expected) (default: all species).

    Returns
    -------
    PMFResult
        Same profiles, contributions of all samples; ``settings['n_fitted']`` is the subsample size.

    References
    ----------
    .. [1] Norris et al. (2014) EPA PMF 5.0 Fundamentals and User Guide, EPA/600/R-14/108.
    .. [2] Paatero, P., Tapper, U. (1994). Environmetrics 5, 111-126. https://doi.org/10.1002/env.3170050203
    """
    x = _as_frame(concentration, "concentration")
    u = _as_frame(uncertainty, "uncertainty")
    alpha = float(result.settings.get("robust_alpha", 4.0))
    G = weighted_nnls_contributions(x, u, result.profiles, robust_alpha=alpha if result.settings.get("robust")
                                    else None, robust_rounds=10)
    u_rob = G.attrs.pop("uncertainty")
    W, H = G.to_numpy(), result.profiles.reindex(columns=x.columns).to_numpy()
    qt, qr = q_values(x.to_numpy(float), u.to_numpy(float), W, H, alpha=alpha)
    m_strong = x.shape[1] if n_strong is None else n_strong
    return PMFResult(
        profiles=result.profiles.reindex(columns=x.columns).copy(), contributions=G, data=x.copy(),
        uncertainty=u.copy(), n_factors=result.n_factors, q_true=qt, q_robust=qr,
        q_expected=q_expected(n_samples=x.shape[0], n_strong=m_strong, n_species=x.shape[1],
                              n_factors=result.n_factors),
        starts=result.starts.copy(), best_seed=result.best_seed,
        settings={**result.settings, "n_fitted": int(result.data.shape[0]), "n_samples": int(x.shape[0]),
                  "n_downweighted": int((np.abs((x.to_numpy(float) - W @ H) / u.to_numpy(float)) > alpha).sum())},
        robust_uncertainty=u_rob)


def cosine_similarity_matrix(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Cosine similarity of every row of ``a`` with every row of ``b`` over their common columns.

    .. math:: \\cos(a, b) = \\frac{a \\cdot b}{\\lVert a \\rVert\\,\\lVert b \\rVert}

    Parameters
    ----------
    a : pandas.DataFrame
        Rows to compare (e.g. estimated profiles, factors x species).
    b : pandas.DataFrame
        Rows to compare against (e.g. true profiles).

    Returns
    -------
    pandas.DataFrame
        Cosine similarity, rows of ``a`` (index) x rows of ``b`` (columns).
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

    Parameters
    ----------
    estimated : pandas.DataFrame
        Estimated profiles, factors x species.
    truth : pandas.DataFrame
        True source profiles, sources x species.

    Returns
    -------
    pandas.DataFrame
        Columns factor, source, cosine (one row per matched pair).
    """
    from scipy.optimize import linear_sum_assignment

    S = cosine_similarity_matrix(estimated, truth)
    r, c = linear_sum_assignment(-S.to_numpy())
    return pd.DataFrame({"factor": S.index[r], "source": S.columns[c], "cosine": S.to_numpy()[r, c]})


def read_uncertainty_file(path, *, concentration: pd.DataFrame, medium: str | None = None) -> pd.DataFrame:
    """User-supplied uncertainties aligned to ``concentration`` (samples x species).

    The CSV has ``sample_id``, optionally ``medium``, and one column per species (same unit
    as the concentrations). Every sample and species of ``concentration`` must be present and
    every value positive.

    Parameters
    ----------
    path : str or path-like
        CSV file of uncertainties.
    concentration : pandas.DataFrame
        Concentrations, samples (index: sample_id) x species.
    medium : str or None, optional
        Keep only rows of this medium when the file has a ``medium`` column.

    Returns
    -------
    pandas.DataFrame
        Uncertainties (float) with the index and columns of ``concentration``.
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
