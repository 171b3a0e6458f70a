"""Adaptive (sample-specific) geochemical background: robust training selection + local Gaussian process.

A single regional baseline ignores that the natural background of a metal changes with the
parent material and the soil's chemical composition, which makes a static value misjudge
samples (Sun et al. 2025). This module predicts the natural
background of every sample from its soil chemistry and judges each sample only by a model
that never saw it:

1. **Inputs**: soil chemistry and other sample covariates (strictly positive numeric ones as
   natural logs, compositional data), lithogenic elements as logs, classes one-hot; the
   coordinates only when asked (``coordinates=True``), because a spatial smoother absorbs
   contamination hot spots into the "background".
2. **Training samples** (which samples are natural): ``training='robust'`` fits a robust
   linear regression (Huber) of :math:`\\ln C` on the inputs and drops samples whose residual
   exceeds :math:`\\tilde r + z\\,s` (:math:`s` the lower-half residual scale, insensitive to the
   one-sided contamination), refits on the rest and iterates until the set is stable; natural
   variation with chemistry stays in, anthropogenic enrichment is excluded. ``training='em'``
   keeps the EM classification of Sun et al. (2025) (lowest dominant mixture component), for
   comparison.
3. **Model**: :math:`\\ln B(\\mathbf x) = \\mathbf x^\\top\\beta + f(\\mathbf x)`, a linear trend
   (least squares on the training samples) plus a Gaussian process :math:`f` with an ARD
   squared-exponential kernel and a nugget [@rasmussen2006]. Hyperparameters by maximum
   marginal likelihood (scikit-learn) on at most ``max_exact`` seeded training samples.
4. **Sparse GP approximation** (what makes 4,000 samples tractable): predictions condition on
   all training samples through ``n_inducing`` inducing points (a seeded random subset of the
   training inputs), the deterministic training conditional / projected process
   approximation (Quinonero-Candela & Rasmussen 2005): cost :math:`O(n m^2)` instead of
   :math:`O(n^3)`. With no more training samples than inducing points it is the exact GP (tested
   against scikit-learn); with fewer it keeps a predictive variance (tested close to the exact
   GP on small data).
5. **Out of fold**: samples are split into ``n_folds`` folds; for each fold, steps 2-4 run on
   the other folds only (selection, trend, GP conditioning; hyperparameters from the full fit)
   and predict the held-out fold. Every sample's background, excess and flag therefore come
   from a model that did not see it. Grid cells are predicted from the full fit.

The reported background is the predictive median :math:`B = e^{\\mu}`; its SD that of the
log-normal predictive distribution, :math:`\\mathrm{SD}(B) = e^{\\mu + s^2/2}\\sqrt{e^{s^2}-1}`
with :math:`s` including the nugget; a sample is flagged "above background" when
:math:`\\ln C > \\mu + z_{flag}\\, s`.

References
----------
Sun et al. (2025), sequential adaptive EM + GPR background workflow.
Rasmussen, C.E., Williams, C.K.I. (2006) Gaussian Processes for Machine Learning. MIT Press.
Quinonero-Candela, J., Rasmussen, C.E. (2005) A unifying view of sparse approximate Gaussian process
regression. J. Mach. Learn. Res. 6, 1939-1959.
Huber, P.J. (1964) Robust estimation of a location parameter. Ann. Math. Stat. 35, 73-101.
doi:10.1214/aoms/1177703732
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from .baselines import em_background_probability, fit_em

__all__ = [
    "SparseGP",
    "AdaptiveBackgroundModel",
    "build_features",
    "encode_features",
    "select_background_robust",
    "select_background_em",
    "fit_sparse_gp",
    "fit_background_model",
    "predict_background",
    "lognormal_background",
    "anthropogenic_excess",
    "adaptive_background",
    "methods_text",
    "summary_display",
    "excess_summary",
    "plot_maps",
]


# --------------------------------------------------------------------------------------------
# sparse (inducing-point) Gaussian process
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SparseGP:
    """A Gaussian process with fixed hyperparameters, predicted through inducing points.

    Attributes
    ----------
    x_train : training inputs (n, d), in encoded units.
    y_train : training targets (n,), centred by ``y_mean``.
    y_mean : constant mean of the GP.
    amplitude2 : signal variance :math:`\\sigma_f^2`.
    length_scales : ARD length scale per input (d,).
    noise2 : nugget variance :math:`\\sigma_n^2`.
    n_inducing : inducing points (a seeded random subset of the training inputs; all training
        points when n <= n_inducing, which is the exact GP).
    seed : seed of the inducing subset.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    y_mean: float
    amplitude2: float
    length_scales: np.ndarray
    noise2: float
    n_inducing: int
    seed: int = 0

    def _k(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
        return self.amplitude2 * np.exp(-0.5 * np.maximum(d2, 0.0))

    def inducing_points(self) -> np.ndarray:
        """Inducing inputs in the scaled metric (x / length_scales)."""
        xs = self.x_train / self.length_scales
        if xs.shape[0] <= self.n_inducing:
            return xs
        rng = np.random.default_rng(self.seed)
        return xs[np.sort(rng.choice(xs.shape[0], self.n_inducing, replace=False))]

    def predict(self, x: np.ndarray, *, chunk: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and SD (nugget included) at the rows of ``x``, ``chunk`` rows at a time.

        Deterministic training conditional (DTC, the projected-process approximation): with
        inducing inputs :math:`Z`, :math:`V = L^{-1}K_{ZX}` (:math:`LL^\\top = K_{ZZ}`) and
        :math:`A = \\sigma_n^2 I + VV^\\top`,

        .. math::

            \\mu_* = m + \\mathbf v_*^\\top A^{-1} V \\mathbf y,\\qquad
            s_*^2 = \\sigma_f^2 - \\lVert\\mathbf v_*\\rVert^2
                    + \\sigma_n^2\\,\\mathbf v_*^\\top A^{-1}\\mathbf v_* + \\sigma_n^2,
            \\quad \\mathbf v_* = L^{-1}\\mathbf k_{Z*}

        (Quinonero-Candela & Rasmussen 2005). With :math:`Z = X` it is the exact GP.
        Hand-written because scikit-learn has no sparse GP and the maintained sparse GP
        libraries (gpytorch) need PyTorch.
        """
        from scipy.linalg import cho_solve, solve_triangular

        xs = self.x_train / self.length_scales
        z = self.inducing_points()
        m = z.shape[0]
        kzz = self._k(z, z) + 1e-8 * self.amplitude2 * np.eye(m)
        L = np.linalg.cholesky(kzz)
        V = solve_triangular(L, self._k(z, xs), lower=True)  # (m, n)
        A = self.noise2 * np.eye(m) + V @ V.T
        LA = np.linalg.cholesky(A)
        w = cho_solve((LA, True), V @ self.y_train)
        xq = np.asarray(x, dtype=float) / self.length_scales
        mu, var = np.empty(xq.shape[0]), np.empty(xq.shape[0])
        for i in range(0, xq.shape[0], chunk):  # memory O(m * chunk) whatever the number of query points
            vs = solve_triangular(L, self._k(z, xq[i:i + chunk]), lower=True)  # (m, q)
            mu[i:i + chunk] = self.y_mean + vs.T @ w
            u = solve_triangular(LA, vs, lower=True)
            var[i:i + chunk] = self.amplitude2 - (vs * vs).sum(0) + self.noise2 * (u * u).sum(0) + self.noise2
        return mu, np.sqrt(np.maximum(var, self.noise2))


def fit_sparse_gp(x, y, *, n_inducing: int = 200, max_exact: int = 200, seed: int = 0,
                 n_restarts: int = 0) -> SparseGP:
    """Fit the hyperparameters by maximum marginal likelihood and return a :class:`SparseGP`.

    The hyperparameters (signal variance, ARD length scales, nugget) come from scikit-learn's
    exact :class:`~sklearn.gaussian_process.GaussianProcessRegressor` with kernel
    :math:`\\sigma_f^2\\,\\mathrm{RBF}(\\boldsymbol\\ell) + \\sigma_n^2\\,\\delta` on at most
    ``max_exact`` training points (a seeded random subset: subset-of-data estimation); the
    returned model conditions on all training points through ``n_inducing`` inducing points.

    Parameters
    ----------
    x : training inputs (n, d), standardised.
    y : training targets (n,).
    n_inducing : inducing points of the predictions.
    max_exact : largest subset for the hyperparameter fit.
    seed : seed of the subset and optimizer restarts.
    n_restarts : extra optimizer starts.

    Returns
    -------
    SparseGP

    References
    ----------
    Rasmussen, C.E., Williams, C.K.I. (2006) Gaussian Processes for Machine Learning, ch. 5 and 8.
    Pedregosa, F. et al. (2011) Scikit-learn: machine learning in Python. JMLR 12, 2825-2830.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim != 2 or x.shape[0] != y.size:
        raise ValueError(f"x must be (n, d) with n = len(y) = {y.size}, got shape {x.shape}")
    if y.size < 8:
        raise ValueError(f"need at least 8 training samples, got {y.size}")
    rng = np.random.default_rng(seed)
    sub = rng.choice(y.size, max_exact, replace=False) if y.size > max_exact else np.arange(y.size)
    kernel = (ConstantKernel(1.0, (1e-3, 1e2)) * RBF(length_scale=np.ones(x.shape[1]), length_scale_bounds=(0.3, 1e3))
              + WhiteKernel(noise_level=0.2, noise_level_bounds=(1e-2, 1e1)))
    gpr = GaussianProcessRegressor(kernel=kernel, normalize_y=True, n_restarts_optimizer=n_restarts,
                                   random_state=int(rng.integers(2**31)))
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        gpr.fit(x[sub], y[sub])
    k = gpr.kernel_
    sd_y = float(np.std(y[sub])) or 1.0
    return SparseGP(x_train=x, y_train=y - float(np.mean(y)), y_mean=float(np.mean(y)),
                   amplitude2=float(k.k1.k1.constant_value) * sd_y ** 2,
                   length_scales=np.broadcast_to(np.atleast_1d(k.k1.k2.length_scale), (x.shape[1],)).astype(float),
                   noise2=float(k.k2.noise_level) * sd_y ** 2, n_inducing=int(n_inducing), seed=seed)


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------
def build_features(sites: pd.DataFrame, *, covariates: list[str], categorical: list[str] = (),
                   concentrations_wide: pd.DataFrame | None = None, coordinates: bool = False,
                   exclude_metal: str | None = None,
                   log_covariates: bool = False) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Input table of the background model: covariates, log lithogenic metals and (optionally) coordinates.

    Parameters
    ----------
    sites : one row per sample (or grid cell) with columns ``x``, ``y`` and the covariates.
    covariates : names of sample columns and/or metal symbols (columns of ``concentrations_wide``).
        Metals enter as natural logs (column ``log_<metal>``).
    categorical : covariates to one-hot encode (others must be numeric).
    concentrations_wide : samples x metals (positive values), aligned with ``sites``' index.
    coordinates : add ``x`` and ``y``.
    exclude_metal : the modelled metal; it is dropped from the metal covariates.
    log_covariates : numeric sample covariates whose observed values are all > 0 enter as natural
        logs (column ``log_<name>``; compositional data such as oxide percentages).

    Returns
    -------
    features : DataFrame (same index as ``sites``), numeric : list, categorical : list.
    """
    metals = set(concentrations_wide.columns) if concentrations_wide is not None else set()
    feats = pd.DataFrame(index=sites.index)
    num, cat = [], []
    for c in covariates:
        if c == exclude_metal:
            continue
        if c in sites.columns:
            if c in categorical or not pd.api.types.is_numeric_dtype(sites[c]):
                feats[c] = sites[c].astype(object).where(sites[c].notna(), "missing").astype(str)
                cat.append(c)
            else:
                v = sites[c].astype(float)
                if log_covariates and (v.dropna() > 0).all() and v.notna().any():
                    feats[f"log_{c}"] = np.log(v)
                    num.append(f"log_{c}")
                else:
                    feats[c] = v
                    num.append(c)
        elif c in metals:
            v = concentrations_wide[c].reindex(sites.index).astype(float)
            feats[f"log_{c}"] = np.log(v.where(v > 0))
            num.append(f"log_{c}")
        else:
            raise ValueError(f"covariate {c!r} is neither a sample column {sorted(map(str, sites.columns))} "
                             f"nor a metal {sorted(metals)}")
    if coordinates:
        for c in ("x", "y"):
            if c not in sites.columns:
                raise ValueError(f"coordinates=True needs columns 'x' and 'y'; got {list(sites.columns)}")
            feats[c] = sites[c].astype(float)
            num.append(c)
    if not num and not cat:
        raise ValueError("no GPR inputs: give covariates or set coordinates=True")
    return feats, num, cat



def encode_features(features: pd.DataFrame, *, numeric: list[str], categorical: list[str]):
    """Fit the input encoding on ``features``: median-imputed, standardised numerics, one-hot classes.

    Parameters
    ----------
    features : DataFrame
        Input table, one row per sample.
    numeric : list of str
        Numeric columns (median-imputed, standardised).
    categorical : list of str
        Categorical columns (one-hot encoded; unknown classes ignored).

    Returns
    -------
    (fitted :class:`sklearn.compose.ColumnTransformer`, encoded array, encoded column names)
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts = []
    if numeric:
        parts.append(("num", Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                                       ("scale", StandardScaler())]), list(numeric)))
    if categorical:
        parts.append(("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), list(categorical)))
    pre = ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=True)
    X = pre.fit_transform(features)
    return pre, np.asarray(X, dtype=float), list(pre.get_feature_names_out())


def _lower_half_scale(r: np.ndarray) -> tuple[float, float]:
    """Median and lower-half scale :math:`\\tilde r - Q_{0.1587}(r)` (= SD for normal data; the
    one-sided contamination above the median does not inflate it)."""
    med = float(np.median(r))
    return med, max(med - float(np.quantile(r, 0.15866)), 1e-6)


def select_background_robust(X: np.ndarray, y: np.ndarray, *, z: float = 2.0, max_iter: int = 30) -> np.ndarray:
    """Training samples by iterated robust regression with residual-based exclusion of anomalies.

    .. math::

        r_i = \\ln C_i - \\mathbf x_i^\\top\\hat\\beta,\\qquad
        \\text{keep } i \\iff r_i \\le \\tilde r + z\\,(\\tilde r - Q_{0.1587}(r))

    with :math:`\\hat\\beta` a Huber regression (scikit-learn ``HuberRegressor``) on all samples in
    the first pass and least squares on the samples kept so far in later passes (the anomalies are
    already out), the median and lower quantile taken over the kept samples; repeated until the
    kept set no longer changes. Only high residuals are excluded: contamination adds, it never removes.

    Parameters
    ----------
    X : encoded inputs (n, d).
    y : ln concentration (n,), finite.
    z : exclusion threshold in residual SDs.
    max_iter : largest number of passes.

    Returns
    -------
    Boolean mask of the training (background) samples.

    References
    ----------
    Huber, P.J. (1964) Ann. Math. Stat. 35, 73-101. doi:10.1214/aoms/1177703732
    Reimann, C., Filzmoser, P., Garrett, R.G. (2005) Sci. Total Environ. 346, 1-16.
    doi:10.1016/j.scitotenv.2004.11.023
    """
    from sklearn.linear_model import HuberRegressor

    keep = np.ones(y.size, dtype=bool)
    for it in range(max_iter):
        if it == 0:  # all samples, contamination included: Huber loss
            h = HuberRegressor(epsilon=1.35, alpha=1e-4, max_iter=500)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                h.fit(X, y)
            r = y - h.predict(X)
        else:  # anomalies already excluded: least squares on the kept samples
            beta = _trend(X[keep], y[keep])
            r = y - (beta[0] + X @ beta[1:])
        med, s = _lower_half_scale(r[keep])
        new = r <= med + z * s
        if np.array_equal(new, keep):
            break
        keep = new
    return keep


def select_background_em(y: np.ndarray, *, max_components: int = 4, min_weight: float = 0.4,
                         seed: int = 0) -> np.ndarray:
    """Training samples as in Sun et al. (2025): EM posterior of the background (or a lower)
    component above 0.5 (:func:`hmlib.baselines.em_background_probability`).

    Parameters
    ----------
    y : ln concentration (finite).
    max_components, min_weight, seed : of :func:`hmlib.baselines.fit_em`.

    Returns
    -------
    Boolean mask of the training samples.
    """
    c = np.exp(y)
    fit = fit_em(c, log_transform=True, max_components=max_components, min_weight=min_weight, seed=seed)
    return em_background_probability(fit, c) > 0.5


@dataclass(frozen=True)
class AdaptiveBackgroundModel:
    """Trend + local GP model of the log background of one metal (fitted on training samples).

    Attributes
    ----------
    beta : trend coefficients (intercept first) on the encoded inputs.
    gp : :class:`SparseGP` of the trend residuals.
    n_train : training samples.
    inputs : encoded input names.
    """

    beta: np.ndarray
    gp: SparseGP
    n_train: int
    inputs: list[str] = field(default_factory=list)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log background mean and SD at encoded inputs ``X``."""
        mu, sd = self.gp.predict(X)
        return self.beta[0] + X @ self.beta[1:] + mu, sd


def _trend(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    A = np.column_stack([np.ones(len(y)), X])
    return np.linalg.lstsq(A, y, rcond=None)[0]


def fit_background_model(X: np.ndarray, y: np.ndarray, *, n_inducing: int = 200, max_exact: int = 200,
                         seed: int = 0, n_restarts: int = 0, gp: SparseGP | None = None,
                         inputs: list[str] = ()) -> AdaptiveBackgroundModel:
    """Fit trend (least squares) and residual GP on training samples.

    Parameters
    ----------
    X, y : encoded inputs and ln concentration of the training samples.
    n_inducing, max_exact, seed, n_restarts : of :func:`fit_sparse_gp`.
    gp : reuse this GP's hyperparameters (out-of-fold fits) instead of fitting them.
    inputs : encoded input names (for the report).

    Returns
    -------
    AdaptiveBackgroundModel
    """
    beta = _trend(X, y)
    r = y - (beta[0] + X @ beta[1:])
    if gp is None:
        g = fit_sparse_gp(X, r, n_inducing=n_inducing, max_exact=max_exact, seed=seed, n_restarts=n_restarts)
    else:
        g = SparseGP(x_train=X, y_train=r - r.mean(), y_mean=float(r.mean()), amplitude2=gp.amplitude2,
                    length_scales=gp.length_scales, noise2=gp.noise2, n_inducing=gp.n_inducing, seed=gp.seed)
    return AdaptiveBackgroundModel(beta=beta, gp=g, n_train=int(len(y)), inputs=list(inputs))


def predict_background(model: AdaptiveBackgroundModel, X: np.ndarray, index=None) -> pd.DataFrame:
    """Background at encoded inputs ``X``: log_mean, log_sd, background, background_sd.

    Parameters
    ----------
    model : AdaptiveBackgroundModel
        Fitted background model.
    X : numpy.ndarray
        Encoded inputs, one row per location.
    index : index-like, optional
        Index of the returned table.

    Returns
    -------
    DataFrame
        log_mean, log_sd (natural-log scale), background and background_sd (concentration unit).
    """
    mu, sd = model.predict(np.asarray(X, dtype=float))
    b, bsd = lognormal_background(mu, sd)
    return pd.DataFrame({"log_mean": mu, "log_sd": sd, "background": b, "background_sd": bsd}, index=index)


def _select(training, X, y, *, z, em_max_components, em_min_weight, seed):
    if training == "robust":
        return select_background_robust(X, y, z=z)
    return select_background_em(y, max_components=em_max_components, min_weight=em_min_weight, seed=seed)


def adaptive_background(concentrations_wide: pd.DataFrame, sites: pd.DataFrame, *, medium: str,
                        covariates: list[str], categorical: list[str] = (), coordinates: bool = False,
                        metals: list[str] | None = None, grid: pd.DataFrame | None = None,
                        training: str = "robust", n_folds: int = 5, z_select: float = 2.0,
                        z_flag: float = 2.0, n_inducing: int = 200, max_exact: int = 200,
                        log_covariates: bool = True, em_max_components: int = 4, em_min_weight: float = 0.4,
                        seed: int = 0, n_restarts: int = 0, progress=None,
                        hyperparameters: dict | None = None) -> dict:
    """Out-of-fold adaptive background of every metal of one medium, per sample and per grid cell.

    Parameters
    ----------
    concentrations_wide : samples x metals (canonical unit), indexed by sample_id.
    sites : sample attributes indexed by sample_id: x, y and the covariates.
    covariates : model inputs (sample columns and/or metal symbols used as log values).
    categorical : covariates treated as classes.
    coordinates : add x, y to the inputs (off by default: see the module notes).
    grid : optional prediction cells with x, y and covariates; the grid model uses the inputs the
        grid has (and the coordinates when it has none), fitted on the full-data training set.
    training : ``'robust'`` (iterated robust regression, default) or ``'em'`` (Sun et al. 2025).
    n_folds : folds of the out-of-fold prediction (>= 2).
    z_select : exclusion threshold of the robust selection (residual SDs).
    z_flag : a sample is flagged when ln C > mu + z_flag s.
    n_inducing, max_exact : of the local GP (:func:`fit_sparse_gp`).
    log_covariates : strictly positive numeric covariates enter as natural logs.
    em_max_components, em_min_weight : of the EM selection.
    seed : seed of folds, subsets and mixtures.
    n_restarts : extra optimizer starts of the hyperparameter fit.
    progress : optional callable wrapping an iterable (console progress), e.g. ``hmlib.progress.track``.
    hyperparameters : optional metal -> :class:`SparseGP` whose kernel hyperparameters are reused
        (the EM comparison reuses those of the robust model, so only the selection differs).

    Notes
    -----
    With ``training='em'`` the mixture is fitted once on all samples of the metal (as in Sun et
    al. 2025) and each fold's training pool keeps its samples classified as background by it;
    the robust selection is rerun on every fold's pool.

    Returns
    -------
    dict with ``samples`` (sample_id, medium, metal, concentration, background, background_sd, excess,
    log_background, log_background_sd, in_training, flagged), ``grid`` (or None), ``models``,
    ``summary`` (one row per metal: inputs, training, n_train, n_total, n_flagged,
    cv_rmse_gpr_log, cv_rmse_static_log, skill, noise_sd_log, grid_inputs) and ``grid_inputs``.
    """
    from sklearn.model_selection import KFold

    if training not in ("robust", "em"):
        raise ValueError(f"training must be 'robust' or 'em', got {training!r}")
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    metals = list(metals or concentrations_wide.columns)
    sample_rows, grid_rows, summary, models = [], [], [], {}
    grid_cov = [c for c in covariates if grid is not None and c in grid.columns]
    grid_xy = coordinates or not grid_cov
    grid_enc: dict = {}
    it = progress(list(enumerate(metals)), desc=f"adaptive background, {medium}") if progress else enumerate(metals)
    for i, metal in it:
        c = concentrations_wide[metal].to_numpy(float)
        ok = np.isfinite(c) & (c > 0)
        feats, num, cat = build_features(sites, covariates=covariates, categorical=list(categorical),
                                         concentrations_wide=concentrations_wide, coordinates=coordinates,
                                         exclude_metal=metal, log_covariates=log_covariates)
        pre, X, names = encode_features(feats, numeric=num, categorical=cat)
        y = np.full(c.shape, np.nan)
        y[ok] = np.log(c[ok])
        s_i = int(np.random.SeedSequence([seed, i]).generate_state(1)[0] % (2**31))
        idx_ok = np.flatnonzero(ok)
        # full fit: training set, hyperparameters (reused by the folds), grid
        sel_full = np.zeros(c.size, bool)
        sel_full[idx_ok] = _select(training, X[idx_ok], y[idx_ok], z=z_select, em_max_components=em_max_components,
                                   em_min_weight=em_min_weight, seed=seed)
        reuse = (hyperparameters or {}).get(metal)
        full = fit_background_model(X[sel_full], y[sel_full], n_inducing=n_inducing, max_exact=max_exact,
                                    seed=s_i, n_restarts=n_restarts, inputs=names,
                                    gp=reuse if reuse is not None and reuse.length_scales.size == X.shape[1] else None)
        models[metal] = full
        mu = np.full(c.size, np.nan)
        sd = np.full(c.size, np.nan)
        static = np.full(c.size, np.nan)
        kf = KFold(n_splits=min(n_folds, idx_ok.size), shuffle=True, random_state=s_i)
        for tr, te in kf.split(idx_ok):
            pool, held = idx_ok[tr], idx_ok[te]
            if training == "em":  # the one mixture of all samples classifies the pool (Sun et al. 2025)
                sel = pool[sel_full[pool]]
            else:
                sel = pool[select_background_robust(X[pool], y[pool], z=z_select)]
            m_k = fit_background_model(X[sel], y[sel], gp=full.gp)
            mu[held], sd[held] = m_k.predict(X[held])
            static[held] = y[sel].mean()
        if (~ok).any():  # no concentration: predicted by the full model (it never saw them)
            mu[~ok], sd[~ok] = full.predict(X[~ok])
        b, bsd = lognormal_background(mu, sd)
        flagged = ok & (y > mu + z_flag * sd)
        sample_rows.append(pd.DataFrame({
            "sample_id": concentrations_wide.index.to_numpy(), "medium": medium, "metal": metal,
            "concentration": c, "background": b, "background_sd": bsd,
            "excess": anthropogenic_excess(c, b), "log_background": mu, "log_background_sd": sd,
            "in_training": sel_full, "flagged": flagged}))
        bgs = sel_full & ok
        rmse_g = float(np.sqrt(np.mean((y[bgs] - mu[bgs]) ** 2))) if bgs.any() else np.nan
        rmse_s = float(np.sqrt(np.mean((y[bgs] - static[bgs]) ** 2))) if bgs.any() else np.nan
        row = {"medium": medium, "metal": metal, "inputs": ", ".join(num + cat), "training": training,
               "n_train": int(sel_full.sum()), "n_total": int(ok.sum()), "n_flagged": int(flagged.sum()),
               "cv_rmse_gpr_log": rmse_g, "cv_rmse_static_log": rmse_s,
               "skill": 1 - rmse_g ** 2 / rmse_s ** 2 if rmse_s > 0 else np.nan,
               "noise_sd_log": float(np.sqrt(full.gp.noise2)), "n_inducing": n_inducing,
               "n_folds": kf.get_n_splits(), "grid_inputs": None}
        if grid is not None:
            if not grid_enc:  # the grid inputs do not depend on the metal: encoded once for all metals
                gf_tr, gnum, gcat = build_features(sites, covariates=grid_cov, categorical=list(categorical),
                                                   concentrations_wide=None, coordinates=grid_xy,
                                                   log_covariates=log_covariates)
                gpre, gX, gnames = encode_features(gf_tr, numeric=gnum, categorical=gcat)
                gfeats, _, _ = build_features(grid, covariates=grid_cov, categorical=list(categorical),
                                              concentrations_wide=None, coordinates=grid_xy,
                                              log_covariates=log_covariates)
                gQ = np.asarray(gpre.transform(gfeats), dtype=float)
                # the prediction is a function of the encoded inputs alone: cells sharing their inputs
                # (classes only, e.g. rock and land use) share it, so each distinct input row is predicted
                # once and copied to its cells (the same numbers to ~1e-15, the order of the BLAS sums; the cost
                # then follows the distinct rows, 20 instead of a million cells for rock and land use)
                uq, inv = np.unique(gQ, axis=0, return_inverse=True)
                grid_enc.update(gnum=gnum, gcat=gcat, gX=gX, gnames=gnames, gQ=uq, g_inv=inv.reshape(-1))
            gnum, gcat, gX, gnames = grid_enc["gnum"], grid_enc["gcat"], grid_enc["gX"], grid_enc["gnames"]
            gmodel = fit_background_model(gX[sel_full], y[sel_full], n_inducing=n_inducing, max_exact=max_exact,
                                          seed=s_i, n_restarts=n_restarts, inputs=gnames)
            gp_ = predict_background(gmodel, grid_enc["gQ"])
            inv = grid_enc["g_inv"]
            grid_rows.append(pd.DataFrame({"cell": np.arange(len(grid)), "x": grid["x"].to_numpy(),
                                           "y": grid["y"].to_numpy(), "medium": medium, "metal": metal,
                                           "background": gp_["background"].to_numpy()[inv],
                                           "background_sd": gp_["background_sd"].to_numpy()[inv]}))
            row["grid_inputs"] = ", ".join(gnum + gcat)
        summary.append(row)
    return {"samples": pd.concat(sample_rows, ignore_index=True),
            "grid": pd.concat(grid_rows, ignore_index=True) if grid_rows else None,
            "models": models, "summary": pd.DataFrame(summary),
            "grid_inputs": (grid_cov + (["x", "y"] if grid_xy else [])) if grid is not None else []}


def lognormal_background(log_mean, log_sd) -> tuple[np.ndarray, np.ndarray]:
    """Background (predictive median) and its SD from the log-scale prediction.

    .. math:: B = e^{\\mu},\\qquad \\mathrm{SD}(B) = e^{\\mu + s^2/2}\\sqrt{e^{s^2} - 1}

    Parameters
    ----------
    log_mean : array-like of float
        Predicted mean of ln C.
    log_sd : array-like of float
        Predicted SD of ln C (>= 0).

    Returns
    -------
    tuple of numpy.ndarray
        Background B and its SD, in the concentration unit.

    References
    ----------
    Aitchison, J., Brown, J.A.C. (1957) The Lognormal Distribution. Cambridge University Press.
    """
    mu = np.asarray(log_mean, dtype=float)
    s = np.asarray(log_sd, dtype=float)
    if np.any(s < 0):
        raise ValueError("log_sd must be >= 0")
    return np.exp(mu), np.exp(mu + s ** 2 / 2) * np.sqrt(np.expm1(s ** 2))


def anthropogenic_excess(concentration, background):
    """Anthropogenic excess :math:`E = \\max(C - B, 0)` (same unit as C and B; NaN stays NaN).

    Parameters
    ----------
    concentration : array-like of float
        Measured concentrations C.
    background : array-like of float
        Background B (>= 0), same shape and unit as ``concentration``.

    Returns
    -------
    numpy.ndarray
        Excess E (same unit), NaN where C or B is NaN.
    """
    c = np.asarray(concentration, dtype=float)
    b = np.asarray(background, dtype=float)
    if c.shape != b.shape:
        raise ValueError(f"concentration and background must have the same shape, got {c.shape} and {b.shape}")
    if np.any(b[np.isfinite(b)] < 0):
        raise ValueError("background must be >= 0")
    e = c - b
    return np.where(np.isnan(e), np.nan, np.maximum(e, 0.0))



# --------------------------------------------------------------------------------------------
# report helpers
# --------------------------------------------------------------------------------------------
def methods_text(*, covariates: list[str], coordinates: bool, grid_inputs: list[str] | None,
                 grid_dropped: list[str] | None, training: str, n_folds: int, n_inducing: int,
                 max_exact: int, z_select: float, z_flag: float, log_covariates: bool,
                 em_min_weight: float = 0.4, metals: list[str] = ()) -> str:
    """Methods paragraph of the adaptive background (pandoc markdown).

    ``metals``: the region's metal symbols, to tell lithogenic-element inputs from sample covariates.

    Parameters
    ----------
    covariates : list of str
        Sample covariates used as inputs.
    coordinates : bool
        Whether x, y were inputs.
    grid_inputs : list of str or None
        Inputs of the grid model (None: no grid model).
    grid_dropped : list of str or None
        Inputs left out of the grid model.
    training : str
        Training selection, ``'robust'`` or the mixture selection.
    n_folds : int
        Number of cross-validation folds.
    n_inducing : int
        Number of inducing points.
    max_exact : int
        Largest training set used for hyperparameter fitting.
    z_select : float
        Residual cut-off of the robust selection (lower-half SDs).
    z_flag : float
        Number of log-scale SDs above which a sample is flagged.
    log_covariates : bool
        Whether positive numeric covariates enter as logs.
    em_min_weight : float, default 0.4
        Smallest weight of the dominant mixture component.
    metals : list of str, default ()
        The region's metal symbols.

    Returns
    -------
    str
        Methods paragraphs (pandoc markdown).
    """
    from .baselines import column_words
    from .descriptive import _and

    def word(c):
        return c if c in set(metals) else column_words(c)

    ins = [word(c) for c in covariates] + (["the coordinates $x, y$"] if coordinates else [])
    lith = [c for c in covariates if c in set(metals)]
    lith_txt = (f"; the lithogenic elements {_and(lith)} enter as natural logs and a metal is never an "
                "input of its own model" if lith else "")
    logtxt = " Strictly positive numeric covariates enter as natural logs (compositional data)." if log_covariates else ""
    coord = ("The coordinates are inputs as well, so the background also follows place: a hot spot of "
             "contamination can be partly absorbed into its neighbours' background." if coordinates else
             "The coordinates are not inputs: the background follows soil chemistry, not place, so that a "
             "contamination hot spot cannot be absorbed into its neighbours' background.")
    if training == "robust":
        sel = (f"The training (background) samples were chosen by a robust (Huber) linear regression of $\\ln C$ "
               f"on the inputs [@huber1964]: samples whose residual exceeded the median residual by more than "
               f"{z_select:g} lower-half standard deviations were excluded, the regression refitted on the rest and "
               "the step repeated until the set no longer changed. Natural variation with soil chemistry stays "
               "in the training set (naturally high soils are not excluded), while anthropogenic enrichment, "
               "which only adds, is removed. The selection of @sun2025adaptive, the samples of the lowest "
               f"dominant Gaussian-mixture component (at least {em_min_weight:.0%} of the samples; mixture fitted "
               "once on all samples), is compared below with the same kernel hyperparameters.")
    else:
        sel = ("The training (background) samples were those whose posterior probability of belonging to the "
               f"lowest dominant Gaussian-mixture component (at least {em_min_weight:.0%} of the samples) or a lower "
               "one exceeded 0.5 [@sun2025adaptive]; the mixture is fitted once on all samples, so this selection, "
               "unlike the rest of the model, is not out of fold.")
    grid = ""
    if grid_inputs is not None:
        dropped = (f"; {_and(word(c) for c in grid_dropped)} "
                   f"{'is' if len(grid_dropped) == 1 else 'are'} not available for the grid cells and "
                   f"{'was' if len(grid_dropped) == 1 else 'were'} left out" if grid_dropped else "")
        grid = (" For the map, a second model with only the inputs the prediction grid carries "
                f"({_and(word(c) if c not in ('x', 'y') else c for c in grid_inputs)}{dropped}) was fitted "
                "to the same training samples and predicted on every grid cell.")
    return f"""
**Adaptive background.** A single regional value ignores that the natural background changes with
parent material and soil chemistry, which makes a static background misjudge samples
[@sun2025adaptive]. The log background of each metal was modelled from {_and(ins)}{lith_txt}.{logtxt}
{coord} {sel}

The model is a linear trend plus a Gaussian process of its residuals [@rasmussen2006;
@pedregosa2011sklearn],

$$\\ln B(\\mathbf x) = \\mathbf x^\\top\\beta + f(\\mathbf x),\\qquad f \\sim \\mathcal{{GP}}\\Big(0,\\;
\\sigma_f^2 \\exp\\Big(-\\tfrac12\\sum_j \\frac{{(x_j - x'_j)^2}}{{\\ell_j^2}}\\Big) + \\sigma_n^2\\,\\delta\\Big),$$

with hyperparameters by maximum marginal likelihood on at most {max_exact} training samples. **Approximation**:
predictions condition on all training samples through {n_inducing} inducing points (a seeded random subset
of the training samples), the projected-process approximation of @quinonero2005sparse, which costs $O(nm^2)$ rather than
$O(n^3)$ and keeps the predictive uncertainty; with at most {n_inducing} training samples it is the exact
Gaussian process, and on small data its predictions match the exact one closely. **Out of fold**: the samples were split into {n_folds} folds; for each fold the
training selection, the trend and the Gaussian process were fitted on the other folds only and predicted the
held-out fold, so no sample's background comes from a model that saw it. The background is the predictive
median $B = e^{{\\mu}}$ with $\\mathrm{{SD}}(B) = e^{{\\mu + s^2/2}}\\sqrt{{e^{{s^2}} - 1}}$ ($s$ includes the
nugget), the anthropogenic excess $E = \\max(C - B, 0)$, and a sample is flagged above its background when
$\\ln C > \\mu + {z_flag:g}\\,s$. Skill is the out-of-fold error of $\\ln C$ on the background samples against a
static background (the training mean of $\\ln C$ in the same folds), $1 - \\mathrm{{MSE}}/\\mathrm{{MSE}}_{{static}}$.{grid}
"""


def summary_display(summary: pd.DataFrame) -> pd.DataFrame:
    """Reader's version of the per-metal model summary.

    Parameters
    ----------
    summary : DataFrame
        Per-metal model summary (metal, n_train, n_total, cv_rmse_gpr_log, cv_rmse_static_log, skill,
        n_flagged, noise_sd_log, optionally medium).

    Returns
    -------
    DataFrame
        Display table: (Medium,) Metal, Training samples, out-of-fold RMSEs (ln), Skill, Flagged above
        background, Nugget SD (ln).
    """
    out = pd.DataFrame({
        "Metal": summary["metal"].to_numpy(),
        "Training samples": (summary["n_train"].astype(int).astype(str) + " / "
                             + summary["n_total"].astype(int).astype(str)).to_numpy(),
        "Out-of-fold RMSE, model (ln)": summary["cv_rmse_gpr_log"].to_numpy(),
        "Out-of-fold RMSE, static (ln)": summary["cv_rmse_static_log"].to_numpy(),
        "Skill": summary["skill"].to_numpy(),
        "Flagged above background": summary["n_flagged"].astype(int).to_numpy(),
        "Nugget SD (ln)": summary["noise_sd_log"].to_numpy()})
    if "medium" in summary and summary["medium"].nunique() > 1:
        out.insert(0, "Medium", summary["medium"].to_numpy())
    return out


def excess_summary(samples: pd.DataFrame) -> pd.DataFrame:
    """Per medium and metal: background range, samples with excess > 0 and flagged above background.

    Parameters
    ----------
    samples : DataFrame
        Per-sample table (medium, metal, concentration, background, excess, optionally flagged).

    Returns
    -------
    DataFrame
        One row per medium and metal: median/min/max_background, n_excess, n_flagged, n_total,
        median_excess_of_flagged (concentration unit), share_excess_of_total (fraction).
    """
    rows = []
    for (medium, metal), g in samples.groupby(["medium", "metal"], sort=False):
        c = g["concentration"]
        rows.append({"medium": medium, "metal": metal, "median_background": g["background"].median(),
                     "min_background": g["background"].min(), "max_background": g["background"].max(),
                     "n_excess": int((g["excess"] > 0).sum()),
                     "n_flagged": int(g["flagged"].sum()) if "flagged" in g else 0,
                     "n_total": int(c.notna().sum()),
                     "median_excess_of_flagged": g.loc[g.get("flagged", g["excess"] > 0).astype(bool), "excess"].median(),
                     "share_excess_of_total": float(g.loc[g.get("flagged", g["excess"] > 0).astype(bool), "excess"].sum()
                                                    / c.sum()) if c.sum() > 0 else np.nan})
    return pd.DataFrame(rows)


def plot_maps(table: pd.DataFrame, *, value: str, unit: str, coordinate_unit: str = "m", ncols: int = 4,
              cell: bool = False, scale: str = "log", cmap: str = "viridis", title_suffix: str = "",
              crs: str | None = None):
    """One map panel per metal of ``value`` (background, background_sd or excess) at points or grid cells.

    ``scale``: colour scale 'log', 'sqrt' (good for excesses, which span zero to a few hot spots) or
    'linear'. Zero values (no excess) at points are drawn in light grey.

    Parameters
    ----------
    table : DataFrame
        Long table with metal, x, y and ``value`` columns.
    value : str
        Column to map.
    unit : str
        Unit of ``value``, for the panel titles.
    coordinate_unit : str, default "m"
        Unit of the coordinates.
    ncols : int, default 4
        Number of panel columns.
    cell : bool, default False
        Draw grid cells (small squares) instead of sample points.
    scale : {'log', 'sqrt', 'linear'}, default 'log'
        Colour scale.
    cmap : str, default "viridis"
        Colour map.
    title_suffix : str, default ""
        Text added after the metal in each title.
    crs : str or None, default None
        Coordinate reference system (``"local"`` for a local grid), for the note under the maps with
        the scale bar and north arrow (:func:`hmlib.plots.decorate_map`).

    Returns
    -------
    matplotlib.figure.Figure
        One map panel per metal.
    """
    from matplotlib.colors import LogNorm, Normalize, PowerNorm
    from matplotlib.ticker import MaxNLocator

    from .baselines import _plain_log_ticks
    from .plots import MIN_FONT_PT, decorate_map, grid_image, map_axes, print_style

    metals = list(dict.fromkeys(table["metal"]))
    with print_style():
        fig, axes = map_axes(len(metals), x=table["x"], y=table["y"])
    size = 7.0
    if cell:  # square markers the size of a grid cell, as hmlib.plots.map_panels draws grids
        ux = np.unique(np.round(table["x"].to_numpy(float), 9))
        step = np.median(np.diff(ux)) if len(ux) > 1 else 1.0
        x0, x1 = axes[0].get_xlim()
        w_pt = axes[0].get_position().width * fig.get_figwidth() * 72
        size = max((step / (x1 - x0) * w_pt) ** 2, 0.5)
    for ax, metal in zip(axes, metals):
        g = table[table["metal"] == metal]
        v = g[value].to_numpy(float)
        pos = np.isfinite(v) & (v > 0)
        if (~pos).any() and not cell:
            ax.scatter(g["x"][~pos], g["y"][~pos], s=4, color="0.82", linewidths=0)
        if pos.any():
            if scale == "sqrt":
                norm = PowerNorm(0.5, vmin=0.0, vmax=float(v[pos].max()))
            elif scale == "log" and v[pos].min() < v[pos].max():
                norm = LogNorm(v[pos].min(), v[pos].max())
            else:
                norm = Normalize()
            img = grid_image(g["x"].to_numpy(float), g["y"].to_numpy(float), np.where(pos, v, np.nan)) \
                if cell else None
            if img is not None:  # a regular grid: one image (markers leave gaps between cells at print size)
                arr, extent = img
                lim = ax.get_xlim(), ax.get_ylim()
                sc = ax.imshow(arr, origin="lower", extent=extent, cmap=cmap, norm=norm, interpolation="nearest",
                               aspect=ax.get_aspect())
                ax.set_xlim(*lim[0])
                ax.set_ylim(*lim[1])
            else:
                sc = ax.scatter(g["x"][pos], g["y"][pos], c=v[pos], s=size, marker="s" if cell else "o",
                                cmap=cmap, norm=norm, linewidths=0)
            cb = fig.colorbar(sc, ax=ax, shrink=0.85, pad=0.03)
            if isinstance(norm, LogNorm):
                _plain_log_ticks(cb.ax.yaxis)
            else:
                cb.ax.yaxis.set_major_locator(MaxNLocator(4))
            cb.ax.tick_params(labelsize=MIN_FONT_PT)
        ax.set_title(f"{metal} {title_suffix}({unit})", fontsize=8)
    decorate_map(axes[0], crs=crs, coordinate_unit=coordinate_unit)
    fig.tight_layout(rect=(0, 0.035, 1, 1))
    return fig
