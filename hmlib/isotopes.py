"""Pb isotope source apportionment: two-end-member linear mixing and Bayesian mixing.

Ratios are named as written in reports, e.g. ``"206Pb/207Pb"`` and ``"208Pb/206Pb"``. End-
members are a long table with columns ``source``, ``ratio``, ``mean``, ``sd``.

References
----------
.. [1] Faure, G., Mensing, T. M. (2005). Isotopes: Principles and Applications, 3rd ed. Wiley.
   (binary mixing of isotope ratios, ch. 26).
.. [2] Parnell, A. C., Inger, R., Bearhop, S., Jackson, A. L. (2010). Source partitioning using
   stable isotopes: coping with too much variation. PLoS ONE 5, e9672.
   https://doi.org/10.1371/journal.pone.0009672
.. [3] Moore, J. W., Semmens, B. X. (2008). Incorporating uncertainty and prior information into
   stable isotope mixing models. Ecology Letters 11, 470-480.
   https://doi.org/10.1111/j.1461-0248.2008.01163.x
.. [4] Foreman-Mackey, D., Hogg, D. W., Lang, D., Goodman, J. (2013). emcee: the MCMC hammer.
   PASP 125, 306-312. https://doi.org/10.1086/670067
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["two_endmember_share", "two_endmember_table", "MixingPosterior", "bayesian_mixing",
           "metropolis_mixing_batch", "bayesian_mixing_table", "endmember_matrices", "rhat", "ess_bulk"]


def two_endmember_share(ratio_sample, *, ratio_a: float, ratio_b: float) -> np.ndarray:
    """Share of end-member A from one isotope ratio by binary linear mixing [1]_.

    .. math:: f_A = \\frac{R_\\mathrm{sample} - R_B}{R_A - R_B}, \\qquad f_B = 1 - f_A

    The ratio mixes linearly in the share of the ratio's *denominator* isotope (for
    206Pb/207Pb, the share of 207Pb); it equals the Pb share when the denominator isotope's
    abundance is the same in both end-members, which is close for common Pb sources. Values
    outside [0, 1] are returned as computed (the sample lies outside the end-member range).

    Parameters
    ----------
    ratio_sample : float or array-like
        Isotope ratio(s) of the sample(s) (dimensionless).
    ratio_a : float
        Ratio of end-member A.
    ratio_b : float
        Ratio of end-member B (must differ from ``ratio_a``).

    Returns
    -------
    numpy.ndarray
        Share of end-member A (fraction, 0-1 inside the mixing line), same shape as ``ratio_sample``.

    References
    ----------
    .. [1] Faure and Mensing (2005) Isotopes: Principles and Applications, Wiley, ch. 26.
    """
    r = np.asarray(ratio_sample, dtype=float)
    if not np.isfinite(ratio_a) or not np.isfinite(ratio_b) or ratio_a == ratio_b:
        raise ValueError(f"end-member ratios must be finite and differ, got {ratio_a} and {ratio_b}")
    return (r - ratio_b) / (ratio_a - ratio_b)


def endmember_matrices(endmembers: pd.DataFrame, *, ratios: list[str],
                       sources: list[str] | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Sources, mean matrix and sd matrix (sources x ratios) from the long end-member table.

    Parameters
    ----------
    endmembers : pandas.DataFrame
        Long end-member table with columns source, ratio, mean, sd.
    ratios : list of str
        Ratio names to use (matrix columns, in order).
    sources : list of str or None, optional
        Sources to use (matrix rows, in order); None uses all in table order.

    Returns
    -------
    tuple of (list of str, numpy.ndarray, numpy.ndarray)
        Source names, mean matrix and sd matrix, each of shape (n_sources, n_ratios).
    """
    need = {"source", "ratio", "mean", "sd"}
    if not need <= set(endmembers.columns):
        raise ValueError(f"end-member table needs columns {sorted(need)}, got {list(endmembers.columns)}")
    srcs = list(dict.fromkeys(endmembers["source"])) if sources is None else list(sources)
    piv_m = endmembers.pivot(index="source", columns="ratio", values="mean")
    piv_s = endmembers.pivot(index="source", columns="ratio", values="sd")
    missing = [(s, r) for s in srcs for r in ratios
               if s not in piv_m.index or r not in piv_m.columns or pd.isna(piv_m.at[s, r])]
    if missing:
        raise ValueError(f"end-member table lacks (source, ratio) pairs {missing}")
    mu = piv_m.loc[srcs, ratios].to_numpy(float)
    sd = piv_s.loc[srcs, ratios].to_numpy(float)
    if (sd < 0).any():
        raise ValueError("end-member sd must be >= 0")
    return srcs, mu, sd


def two_endmember_table(samples: pd.DataFrame, endmembers: pd.DataFrame, *, ratio_columns: dict[str, str],
                        pair: tuple[str, str]) -> pd.DataFrame:
    """Binary mixing shares for every sample and ratio (long table).

    Columns: sample_id, medium, method (``linear_<ratio>``), source, share, ci_low, ci_high
    (NaN: the linear model gives a point estimate), outside_range (share outside [0, 1]).

    Parameters
    ----------
    samples : pandas.DataFrame
        Sample table with sample_id, medium and the ratio columns.
    endmembers : pandas.DataFrame
        Long end-member table (source, ratio, mean, sd).
    ratio_columns : dict of str to str
        Ratio name mapped to the column of ``samples`` holding it.
    pair : tuple of (str, str)
        The two end-member sources (A, B).

    Returns
    -------
    pandas.DataFrame
        Long table with the columns listed above (share as a fraction 0-1).
    """
    a, b = pair
    rows = []
    for ratio, col in ratio_columns.items():
        _, mu, _ = endmember_matrices(endmembers, ratios=[ratio], sources=[a, b])
        ok = samples[col].notna()
        f = two_endmember_share(samples.loc[ok, col].to_numpy(float), ratio_a=mu[0, 0], ratio_b=mu[1, 0])
        for src, share in ((a, f), (b, 1 - f)):
            rows.append(pd.DataFrame({"sample_id": samples.loc[ok, "sample_id"].to_numpy(),
                                      "medium": samples.loc[ok, "medium"].to_numpy(),
                                      "method": f"linear {ratio}", "source": src, "share": share,
                                      "ci_low": np.nan, "ci_high": np.nan,
                                      "outside_range": (f < 0) | (f > 1)}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


@dataclass
class MixingPosterior:
    """Posterior of source shares for one sample.

    Attributes
    ----------
    sources : source names (column order of ``draws``).
    draws : array (n_draws, n_sources) of posterior share draws (each row sums to 1).
    mean, ci_low, ci_high : posterior mean and equal-tailed 95 % interval of each share.
    acceptance : mean acceptance fraction of the sampler.
    settings : sampler settings (walkers, steps, burn-in, seed, prior alpha).
    """

    sources: list[str]
    draws: np.ndarray
    mean: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    acceptance: float
    settings: dict


def _softmax_alr(z: np.ndarray) -> np.ndarray:
    zz = np.concatenate([z, np.zeros((z.shape[0], 1))], axis=1)
    zz = zz - zz.max(axis=1, keepdims=True)
    e = np.exp(zz)
    return e / e.sum(axis=1, keepdims=True)


def bayesian_mixing(observed, *, endmember_mean, endmember_sd, residual_sd, seed: int,
                    prior_alpha=None, sources: list[str] | None = None, n_walkers: int = 16,
                    n_steps: int = 1500, burn: int = 500) -> MixingPosterior:
    """Bayesian mixing model for two or more end-members (SIAR/MixSIR form [2]_ [3]_).

    Likelihood of the sample's tracer values :math:`y_t` (here isotope ratios) given shares
    :math:`f` (on the simplex), end-member means :math:`\\mu_{kt}` and sds :math:`\\sigma_{kt}`:

    .. math::

        y_t \\sim N\\Big(\\sum_k f_k \\mu_{kt},\\; \\sum_k f_k^2 \\sigma_{kt}^2 + \\sigma_{\\mathrm{res},t}^2\\Big),
        \\qquad f \\sim \\mathrm{Dirichlet}(\\alpha)

    Sampler: emcee's affine-invariant ensemble sampler [4]_ on additive log-ratio coordinates
    :math:`z_k = \\ln(f_k/f_K)`; the log posterior includes the Jacobian
    :math:`\\prod_k f_k`, so the Dirichlet prior holds on the shares. The ensemble's random
    state is seeded from ``seed`` (numpy ``RandomState``, which emcee uses), and the starting
    walkers from ``numpy.random.default_rng(seed)``.

    Parameters
    ----------
    observed : tracer values of the sample (length T).
    endmember_mean, endmember_sd : arrays (K, T) of end-member means and sds.
    residual_sd : measurement/residual sd per tracer (length T or scalar), > 0.
    seed : random seed.
    prior_alpha : Dirichlet concentration (length K; default all ones = uniform on the simplex).
    n_walkers, n_steps, burn : ensemble size, steps, and steps discarded as burn-in.

    Returns
    -------
    MixingPosterior
    """
    import emcee

    y = np.asarray(observed, dtype=float).ravel()
    mu = np.atleast_2d(np.asarray(endmember_mean, dtype=float))
    sd = np.atleast_2d(np.asarray(endmember_sd, dtype=float))
    K, T = mu.shape
    if K < 2:
        raise ValueError(f"need >= 2 end-members, got {K}")
    if y.shape != (T,) or sd.shape != (K, T):
        raise ValueError(f"expected observed of length {T} and endmember_sd of shape {(K, T)}, "
                         f"got {y.shape} and {sd.shape}")
    if not np.isfinite(y).all():
        raise ValueError(f"observed tracer values must be finite, got {y}")
    res = np.broadcast_to(np.asarray(residual_sd, dtype=float), (T,))
    if not (res > 0).all():
        raise ValueError(f"residual_sd must be > 0, got {res}")
    alpha = np.ones(K) if prior_alpha is None else np.asarray(prior_alpha, dtype=float)
    if alpha.shape != (K,) or not (alpha > 0).all():
        raise ValueError(f"prior_alpha must be {K} positive numbers, got {alpha}")
    if burn >= n_steps:
        raise ValueError(f"burn ({burn}) must be < n_steps ({n_steps})")
    ndim = K - 1
    n_walkers = max(int(n_walkers), 2 * ndim + 2)
    if n_walkers % 2:
        n_walkers += 1
    mu2, sd2, res2 = mu, sd ** 2, res ** 2

    def log_prob(z):
        z = np.atleast_2d(z)
        f = _softmax_alr(z)
        m = f @ mu2
        v = (f ** 2) @ sd2 + res2
        ll = -0.5 * np.sum((y - m) ** 2 / v + np.log(2 * np.pi * v), axis=1)
        lp = np.sum(alpha * np.log(np.clip(f, 1e-300, None)), axis=1)
        out = ll + lp
        return np.where(np.isfinite(out), out, -np.inf)

    rng = np.random.default_rng(seed)
    p0 = rng.normal(0.0, 0.5, size=(n_walkers, ndim))
    sampler = emcee.EnsembleSampler(n_walkers, ndim, log_prob, vectorize=True)
    state = emcee.State(p0, random_state=np.random.RandomState(seed % (2**32)).get_state())
    sampler.run_mcmc(state, n_steps, progress=False)
    chain = sampler.get_chain(discard=burn, flat=True)
    draws = _softmax_alr(chain)
    return MixingPosterior(
        sources=list(sources) if sources is not None else [f"S{k + 1}" for k in range(K)],
        draws=draws, mean=draws.mean(axis=0), ci_low=np.quantile(draws, 0.025, axis=0),
        ci_high=np.quantile(draws, 0.975, axis=0), acceptance=float(np.mean(sampler.acceptance_fraction)),
        settings={"n_walkers": n_walkers, "n_steps": n_steps, "burn": burn, "seed": seed,
                  "prior_alpha": alpha.tolist(), "sampler": f"emcee {emcee.__version__} EnsembleSampler"})


def _log_post(z, y, mu, sd2, res2, alpha):
    """Log posterior on alr coordinates; z (..., K-1), y (..., T); returns (...)."""
    zz = np.concatenate([z, np.zeros(z.shape[:-1] + (1,))], axis=-1)
    zz = zz - zz.max(axis=-1, keepdims=True)
    e = np.exp(zz)
    f = e / e.sum(axis=-1, keepdims=True)
    m = f @ mu
    v = (f ** 2) @ sd2 + res2
    ll = -0.5 * np.sum((y - m) ** 2 / v + np.log(2 * np.pi * v), axis=-1)
    return ll + np.sum(alpha * np.log(np.clip(f, 1e-300, None)), axis=-1), f


def metropolis_mixing_batch(observed, *, endmember_mean, endmember_sd, residual_sd, seed: int, prior_alpha=None,
                            n_chains: int = 4, n_steps: int = 4000, burn: int = 1000) -> dict[str, np.ndarray]:
    """The model of :func:`bayesian_mixing` for many samples at once, by random-walk Metropolis.

    Why hand-written: emcee runs one ensemble per sample (about 1 s each here), so a region of
    a few hundred samples would take minutes; independent random-walk Metropolis chains [5]_ for
    all samples advanced together as numpy arrays take seconds. Proposals are Gaussian on the
    alr coordinates with a per-sample step size tuned during burn-in toward an acceptance of
    0.2-0.5 (then fixed, so the kept chain is a valid Metropolis chain). Checked against the
    emcee sampler of :func:`bayesian_mixing` in ``tests/test_isotopes.py``.

    Parameters
    ----------
    observed : array (S, T) of tracer values of S samples.
    endmember_mean, endmember_sd, residual_sd, prior_alpha : as in :func:`bayesian_mixing`.
    seed : seed of ``numpy.random.default_rng``.
    n_chains, n_steps, burn : chains per sample, steps per chain and burn-in steps.

    Returns
    -------
    dict with ``mean``, ``ci_low``, ``ci_high``, ``rhat``, ``ess`` (S, K) and ``acceptance`` (S,).

    References
    ----------
    .. [5] Metropolis, N., Rosenbluth, A. W., Rosenbluth, M. N., Teller, A. H., Teller, E. (1953).
       J. Chem. Phys. 21, 1087-1092. https://doi.org/10.1063/1.1699114
    """
    y = np.atleast_2d(np.asarray(observed, dtype=float))
    mu = np.atleast_2d(np.asarray(endmember_mean, dtype=float))
    sd = np.atleast_2d(np.asarray(endmember_sd, dtype=float))
    K, T = mu.shape
    S = y.shape[0]
    if y.shape[1] != T or sd.shape != (K, T) or K < 2:
        raise ValueError(f"expected observed (S, {T}), endmember_sd {(K, T)} and K >= 2; got {y.shape}, {sd.shape}")
    if not np.isfinite(y).all():
        raise ValueError("observed tracer values must be finite")
    res2 = np.broadcast_to(np.asarray(residual_sd, dtype=float), (T,)) ** 2
    if not (res2 > 0).all():
        raise ValueError("residual_sd must be > 0")
    alpha = np.ones(K) if prior_alpha is None else np.asarray(prior_alpha, dtype=float)
    if burn >= n_steps:
        raise ValueError(f"burn ({burn}) must be < n_steps ({n_steps})")
    rng = np.random.default_rng(seed)
    yy = y[:, None, :]  # S x 1 x T
    z = rng.normal(0.0, 0.5, size=(S, n_chains, K - 1))
    lp, f = _log_post(z, yy, mu, sd ** 2, res2, alpha)
    step = np.full((S, 1, 1), 0.5)
    acc_window = np.zeros(S)
    acc_kept = np.zeros(S)
    keep = []
    for it in range(n_steps):
        prop = z + step * rng.standard_normal(z.shape)
        lp_new, f_new = _log_post(prop, yy, mu, sd ** 2, res2, alpha)
        accept = np.log(rng.uniform(size=lp.shape)) < lp_new - lp
        z = np.where(accept[..., None], prop, z)
        lp = np.where(accept, lp_new, lp)
        f = np.where(accept[..., None], f_new, f)
        if it < burn:
            acc_window += accept.mean(axis=1)
            if (it + 1) % 50 == 0:
                rate = acc_window / 50
                step[:, 0, 0] *= np.where(rate < 0.2, 0.7, np.where(rate > 0.5, 1.4, 1.0))
                acc_window[:] = 0
        else:
            acc_kept += accept.mean(axis=1)
            keep.append(f)
    chains = np.stack(keep, axis=2)  # S x chains x kept x K
    draws = chains.reshape(S, -1, K)  # S x (chains*kept) x K
    return {"mean": draws.mean(axis=1), "ci_low": np.quantile(draws, 0.025, axis=1),
            "ci_high": np.quantile(draws, 0.975, axis=1), "acceptance": acc_kept / (n_steps - burn),
            "rhat": rhat(chains), "ess": ess_bulk(chains)}


def _split_rank_normal(chains: np.ndarray) -> np.ndarray:
    """Split each chain in halves and rank-normalise over all draws (Vehtari et al. 2021, eq. 14)."""
    from scipy import stats

    c = np.asarray(chains, float)
    n = c.shape[-2] // 2
    half = np.concatenate([c[..., :n, :], c[..., c.shape[-2] - n:, :]], axis=-3)  # ... x 2M x n x K
    shp = half.shape
    flat = np.moveaxis(half, -1, -3).reshape(*shp[:-3], shp[-1], -1)  # ... x K x (2M n)
    r = stats.rankdata(flat, axis=-1)
    z = stats.norm.ppf((r - 0.375) / (flat.shape[-1] + 0.25))
    return np.moveaxis(z.reshape(*shp[:-3], shp[-1], shp[-3], shp[-2]), -3, -1)  # ... x 2M x n x K


def _rhat_basic(x: np.ndarray) -> np.ndarray:
    n = x.shape[-2]
    means = x.mean(axis=-2)
    b = n * means.var(axis=-2, ddof=1)
    w = x.var(axis=-2, ddof=1).mean(axis=-2)
    var_plus = (n - 1) / n * w + b / n
    return np.sqrt(var_plus / w)


def rhat(chains: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat, the larger of the bulk and the folded (tail) value.

    .. math:: \\hat R = \\sqrt{\\frac{\\tfrac{N-1}{N} W + \\tfrac1N B}{W}}

    computed on the rank-normalised draws of the split chains (bulk) and of their absolute
    deviations from the median (folded), as recommended by Vehtari et al. (2021); values above
    1.01 mean the chains have not mixed.

    Parameters
    ----------
    chains : array (..., chains, draws, K): draws of K quantities.

    Returns
    -------
    array (..., K)

    References
    ----------
    Vehtari, A., Gelman, A., Simpson, D., Carpenter, B., Buerkner, P.-C. (2021) Rank-normalization,
    folding, and localization: an improved R-hat for assessing convergence of MCMC. Bayesian
    Analysis 16:667-718. doi:10.1214/20-BA1221
    """
    c = np.asarray(chains, float)
    bulk = _rhat_basic(_split_rank_normal(c))
    med = np.median(c.reshape(*c.shape[:-3], -1, c.shape[-1]), axis=-2)
    folded = _rhat_basic(_split_rank_normal(np.abs(c - med[..., None, None, :])))
    return np.maximum(bulk, folded)


def ess_bulk(chains: np.ndarray) -> np.ndarray:
    """Bulk effective sample size of rank-normalised split chains (Vehtari et al. 2021).

    .. math:: \\mathrm{ESS} = \\frac{M N}{\\hat\\tau}, \\qquad
              \\hat\\tau = -1 + 2 \\sum_{t'} \\hat P_{t'}, \\qquad
              \\hat\\rho_t = 1 - \\frac{W - \\overline{\\gamma_t}}{\\widehat{\\mathrm{var}}^+}

    with :math:`\\overline{\\gamma_t}` the mean over chains of the lag-t autocovariance (FFT),
    :math:`\\hat P_{t'} = \\hat\\rho_{2t'} + \\hat\\rho_{2t'+1}` summed while positive and made
    monotone (Geyer's initial monotone sequence).

    Parameters
    ----------
    chains : array (..., chains, draws, K).

    Returns
    -------
    array (..., K)

    References
    ----------
    Vehtari et al. (2021) doi:10.1214/20-BA1221; Geyer, C.J. (1992) Practical Markov chain Monte
    Carlo. Statistical Science 7:473-483. doi:10.1214/ss/1177011137
    """
    z = _split_rank_normal(np.asarray(chains, float))
    z = np.moveaxis(z, -1, -3)  # ... x K x M x N
    m, n = z.shape[-2], z.shape[-1]
    x = z - z.mean(axis=-1, keepdims=True)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(x, n=size, axis=-1)
    acov = np.fft.irfft(f * np.conj(f), n=size, axis=-1)[..., :n] / n  # biased autocovariance
    w = (acov[..., 0] * n / (n - 1)).mean(axis=-1)
    b_over_n = z.mean(axis=-1).var(axis=-1, ddof=1)  # B / N
    var_plus = (n - 1) / n * w + b_over_n
    rho = 1.0 - (w[..., None] - acov.mean(axis=-2)) / var_plus[..., None]
    rho[..., 0] = 1.0
    npair = n // 2
    pairs = rho[..., : 2 * npair].reshape(*rho.shape[:-1], npair, 2).sum(axis=-1)
    positive = np.cumprod(pairs > 0, axis=-1).astype(bool)
    pairs = np.where(positive, pairs, 0.0)
    pairs = np.minimum.accumulate(np.where(positive, pairs, np.inf), axis=-1)
    pairs = np.where(positive, pairs, 0.0)
    tau = np.maximum(-1.0 + 2.0 * pairs.sum(axis=-1), 1.0 / np.log10(m * n))
    return m * n / tau


def bayesian_mixing_table(samples: pd.DataFrame, endmembers: pd.DataFrame, *, ratio_columns: dict[str, str],
                          residual_sd: float | dict[str, float], seed: int, sources: list[str] | None = None,
                          prior_alpha=None, n_steps: int = 4000, burn: int = 1000, n_chains: int = 4) -> pd.DataFrame:
    """Bayesian mixing shares for every sample with all ratios present (long table).

    Uses :func:`metropolis_mixing_batch` (all samples at once). Columns: sample_id, medium,
    method (``bayesian``), source, share (posterior mean), ci_low, ci_high (2.5 and 97.5
    percentiles), acceptance, rhat (rank-normalised split R-hat, :func:`rhat`) and ess (bulk
    effective sample size, :func:`ess_bulk`) of each share.

    Parameters
    ----------
    samples : pandas.DataFrame
        Sample table with sample_id, medium and the ratio columns.
    endmembers : pandas.DataFrame
        Long end-member table (source, ratio, mean, sd).
    ratio_columns : dict of str to str
        Ratio name mapped to the column of ``samples`` holding it.
    residual_sd : float or dict of str to float
        Residual (analytical) sd of each ratio, one value for all or per ratio.
    seed : int
        Random seed of the sampler.
    sources : list of str or None, optional
        Sources to include; None uses all in the end-member table.
    prior_alpha : array-like or None, optional
        Dirichlet prior concentration of the shares; None uses the sampler default.
    n_steps : int, default 4000
        Metropolis steps per chain.
    burn : int, default 1000
        Burn-in steps discarded per chain.
    n_chains : int, default 4
        Number of chains.

    Returns
    -------
    pandas.DataFrame
        Long table with the columns listed above (shares as fractions 0-1).
    """
    ratios = list(ratio_columns)
    srcs, mu, sd = endmember_matrices(endmembers, ratios=ratios, sources=sources)
    res = np.array([residual_sd[r] if isinstance(residual_sd, dict) else residual_sd for r in ratios], float)
    cols = [ratio_columns[r] for r in ratios]
    ok = samples[cols].notna().all(axis=1)
    sub = samples[ok]
    if sub.empty:
        return pd.DataFrame(columns=["sample_id", "medium", "method", "source", "share", "ci_low", "ci_high",
                                     "acceptance", "rhat", "ess"])
    post = metropolis_mixing_batch(sub[cols].to_numpy(float), endmember_mean=mu, endmember_sd=sd, residual_sd=res,
                                   seed=seed, prior_alpha=prior_alpha, n_steps=n_steps, burn=burn, n_chains=n_chains)
    rows = []
    for k, src in enumerate(srcs):
        rows.append(pd.DataFrame({"sample_id": sub["sample_id"].to_numpy(), "medium": sub["medium"].to_numpy(),
                                  "method": "bayesian", "source": src, "share": post["mean"][:, k],
                                  "ci_low": post["ci_low"][:, k], "ci_high": post["ci_high"][:, k],
                                  "acceptance": post["acceptance"], "rhat": post["rhat"][:, k],
                                  "ess": post["ess"][:, k]}))
    return pd.concat(rows, ignore_index=True)
