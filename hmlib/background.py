"""Adaptive (spatially varying) geochemical background: EM classification + Gaussian process regression.

A single regional baseline ignores that the natural background of a metal changes with the
parent material, the soil and place. Following the sequential workflow of Sun et al. (2025,
seed 000 of this project) this module

1. classifies each sample as background or not with the Gaussian mixture of
   :func:`hmlib.baselines.fit_em` (posterior probability of the background component, or of a
   lower one, above 0.5);
2. regresses the log concentration of the background samples on covariates with a Gaussian
   process (:class:`sklearn.gaussian_process.GaussianProcessRegressor`): lithogenic elements
   (log values), categorical rock type or land use (one-hot), numeric soil properties and the
   coordinates;
3. predicts the log background, with its standard deviation, for every sample and every grid
   cell, and the anthropogenic excess :math:`E = \\max(C - B, 0)`.

.. math::

    \\ln B(\\mathbf x) \\sim \\mathcal{GP}\\big(m, k\\big),\\qquad
    k(\\mathbf x, \\mathbf x') = \\sigma_f^2 \\exp\\Big(-\\tfrac12 \\sum_j
    \\frac{(x_j - x_j')^2}{\\ell_j^2}\\Big) + \\sigma_n^2\\, \\delta_{\\mathbf x \\mathbf x'}

with one length scale :math:`\\ell_j` per standardised input (automatic relevance
determination) and hyperparameters by maximum marginal likelihood [@rasmussen2006].
The reported background is the predictive median :math:`B = e^{\\mu}` and its standard
deviation the one of the log-normal predictive distribution,
:math:`\\mathrm{SD}(B) = e^{\\mu + s^2/2}\\sqrt{e^{s^2} - 1}`, where :math:`s` includes the
nugget :math:`\\sigma_n` (the scatter of a new background observation at that place).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from .baselines import EMFit, em_background_probability, fit_em

__all__ = [
    "AdaptiveBackgroundModel",
    "build_features",
    "fit_background_gpr",
    "predict_background",
    "lognormal_background",
    "anthropogenic_excess",
    "adaptive_background",
    "methods_text",
    "summary_display",
    "excess_summary",
    "plot_maps",
]


@dataclass(frozen=True)
class AdaptiveBackgroundModel:
    """A fitted GPR model of the log background of one metal in one medium.

    Attributes
    ----------
    metal, medium : what is modelled.
    numeric, categorical : input columns (numeric ones standardised, categorical one-hot).
    pipeline : fitted :class:`sklearn.pipeline.Pipeline` (preprocessing + GPR); predicts ln B.
    kernel : the fitted kernel, as text.
    length_scales : fitted ARD length scale per encoded input (Series; standardised units).
    noise_sd : fitted nugget standard deviation (log units).
    n_train : number of background samples used for training.
    log_marginal_likelihood : at the fitted hyperparameters.
    cv_rmse_gpr, cv_rmse_static : k-fold cross-validated RMSE (log units) of the GPR (kernel
        hyperparameters held at the full fit) and of a static background (training-fold mean of
        ln C) on the background samples.
    """

    metal: str
    medium: str
    numeric: list[str]
    categorical: list[str]
    pipeline: object
    kernel: str
    length_scales: pd.Series
    noise_sd: float
    n_train: int
    log_marginal_likelihood: float
    cv_rmse_gpr: float
    cv_rmse_static: float
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
def build_features(sites: pd.DataFrame, *, covariates: list[str], categorical: list[str] = (),
                   concentrations_wide: pd.DataFrame | None = None, coordinates: bool = True,
                   exclude_metal: str | None = None) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Input table of the GPR: covariates, log lithogenic metals and coordinates.

    Parameters
    ----------
    sites : one row per sample (or grid cell) with columns ``x``, ``y`` and the covariates.
    covariates : names of sample columns and/or metal symbols (columns of ``concentrations_wide``).
        Metals enter as natural logs (column ``log_<metal>``).
    categorical : covariates to one-hot encode (others must be numeric).
    concentrations_wide : samples x metals (positive values), aligned with ``sites``' index.
    coordinates : add ``x`` and ``y``.
    exclude_metal : the modelled metal; it is dropped from the metal covariates.

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
                feats[c] = sites[c].astype(float)
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


def _pipeline(numeric, categorical, categories, n_inputs_guess: int, seed: int, n_restarts: int, kernel=None):
    from sklearn.compose import ColumnTransformer
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts = []
    if numeric:
        parts.append(("num", Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                                       ("scale", StandardScaler())]), list(numeric)))
    if categorical:
        parts.append(("cat", OneHotEncoder(categories=categories, handle_unknown="ignore",
                                            sparse_output=False), list(categorical)))
    pre = ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=True)
    if kernel is None:
        kernel = (ConstantKernel(1.0, (1e-3, 1e2)) * RBF(length_scale=np.ones(n_inputs_guess),
                                                         length_scale_bounds=(5e-2, 1e3))
                  + WhiteKernel(noise_level=0.2, noise_level_bounds=(1e-4, 1e1)))
        gpr = GaussianProcessRegressor(kernel=kernel, normalize_y=True, n_restarts_optimizer=n_restarts,
                                       random_state=seed)
    else:
        gpr = GaussianProcessRegressor(kernel=kernel, normalize_y=True, optimizer=None)
    return Pipeline([("pre", pre), ("gpr", gpr)])


def _n_encoded(features: pd.DataFrame, numeric, categorical) -> int:
    return len(numeric) + sum(features[c].nunique(dropna=False) for c in categorical)


def fit_background_gpr(features: pd.DataFrame, log_background, *, numeric: list[str], categorical: list[str],
                       metal: str = "", medium: str = "", seed: int = 0, n_restarts: int = 0,
                       cv_folds: int = 5) -> AdaptiveBackgroundModel:
    """Fit the GPR of log background on ``features`` (rows = background samples).

    Parameters
    ----------
    features : inputs of the training samples (from :func:`build_features`).
    log_background : ln concentration of the same samples (finite).
    numeric, categorical : column roles (numeric: median-imputed and standardised;
        categorical: one-hot, unseen classes at prediction encode as all zeros).
    seed : random_state of the optimizer restarts and of the CV folds.
    n_restarts : extra optimizer starts drawn from the hyperparameter bounds.
    cv_folds : folds of the cross-validated RMSE (0 to skip).

    References
    ----------
    Rasmussen, C.E., Williams, C.K.I. (2006) Gaussian Processes for Machine Learning. MIT Press.
    ISBN 0-262-18253-X. http://gaussianprocess.org/gpml/
    Pedregosa, F. et al. (2011) Scikit-learn: machine learning in Python. JMLR 12, 2825-2830.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import KFold

    y = np.asarray(log_background, dtype=float)
    if y.ndim != 1 or len(y) != len(features):
        raise ValueError(f"log_background must be 1-D with one value per feature row ({len(features)}), "
                         f"got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("log_background must be finite (drop samples with zero or missing concentration)")
    if len(y) < 8:
        raise ValueError(f"need at least 8 background samples to fit the GPR, got {len(y)}")
    with threadpool_limits(limits=1):  # 200x200 matrices: BLAS threads only oversubscribe the cores
        return _fit_background_gpr(features, y, numeric=numeric, categorical=categorical, metal=metal,
                                   medium=medium, seed=seed, n_restarts=n_restarts, cv_folds=cv_folds)


def _fit_background_gpr(features, y, *, numeric, categorical, metal, medium, seed, n_restarts, cv_folds):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import KFold

    d = _n_encoded(features, numeric, categorical)
    # classes fixed from the whole training table so that CV folds encode the same columns
    categories = [sorted(features[c].astype(str).unique()) for c in categorical]
    pipe = _pipeline(numeric, categorical, categories, d, seed, n_restarts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe.fit(features, y)
    gpr = pipe.named_steps["gpr"]
    k = gpr.kernel_
    names = list(pipe.named_steps["pre"].get_feature_names_out())
    ls = np.atleast_1d(k.k1.k2.length_scale)
    ls = pd.Series(ls if ls.size == len(names) else np.repeat(ls, len(names)), index=names, name="length_scale")
    noise_sd = float(np.sqrt(k.k2.noise_level) * np.std(y))  # normalize_y: noise is in units of std(y)
    cv_g = cv_s = np.nan
    if cv_folds and len(y) >= 2 * cv_folds:
        err_g, err_s = [], []
        kf = KFold(n_splits=cv_folds, shuffle=True, random_state=seed)
        for tr, te in kf.split(features):
            p = _pipeline(numeric, categorical, categories, d, seed, 0, kernel=k)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p.fit(features.iloc[tr], y[tr])
            err_g.append(p.predict(features.iloc[te]) - y[te])
            err_s.append(y[tr].mean() - y[te])
        cv_g = float(np.sqrt(np.mean(np.concatenate(err_g) ** 2)))
        cv_s = float(np.sqrt(np.mean(np.concatenate(err_s) ** 2)))
    return AdaptiveBackgroundModel(metal=metal, medium=medium, numeric=list(numeric), categorical=list(categorical),
                                   pipeline=pipe, kernel=str(k), length_scales=ls, noise_sd=noise_sd,
                                   n_train=int(len(y)), log_marginal_likelihood=float(gpr.log_marginal_likelihood_value_),
                                   cv_rmse_gpr=cv_g, cv_rmse_static=cv_s)


def lognormal_background(log_mean, log_sd) -> tuple[np.ndarray, np.ndarray]:
    """Background (predictive median) and its SD from the log-scale prediction.

    .. math:: B = e^{\\mu},\\qquad \\mathrm{SD}(B) = e^{\\mu + s^2/2}\\sqrt{e^{s^2} - 1}

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
    """Anthropogenic excess :math:`E = \\max(C - B, 0)` (same unit as C and B; NaN stays NaN)."""
    c = np.asarray(concentration, dtype=float)
    b = np.asarray(background, dtype=float)
    if c.shape != b.shape:
        raise ValueError(f"concentration and background must have the same shape, got {c.shape} and {b.shape}")
    if np.any(b[np.isfinite(b)] < 0):
        raise ValueError("background must be >= 0")
    e = c - b
    return np.where(np.isnan(e), np.nan, np.maximum(e, 0.0))


def predict_background(model: AdaptiveBackgroundModel, features: pd.DataFrame) -> pd.DataFrame:
    """Predict the background at ``features`` rows: log_mean, log_sd, background, background_sd."""
    with threadpool_limits(limits=1):
        mu, sd = model.pipeline.predict(features, return_std=True)
    b, bsd = lognormal_background(mu, sd)
    return pd.DataFrame({"log_mean": mu, "log_sd": sd, "background": b, "background_sd": bsd}, index=features.index)


def adaptive_background(concentrations_wide: pd.DataFrame, sites: pd.DataFrame, *, medium: str,
                        covariates: list[str], categorical: list[str] = (), coordinates: bool = True,
                        metals: list[str] | None = None, grid: pd.DataFrame | None = None,
                        em_fits: dict[str, EMFit] | None = None, log_transform: bool = True,
                        em_max_components: int = 4, em_min_weight: float = 0.4, seed: int = 0,
                        n_restarts: int = 0) -> dict:
    """Adaptive background of every metal of one medium, per sample and per grid cell.

    Parameters
    ----------
    concentrations_wide : samples x metals (canonical unit), indexed by sample_id.
    sites : sample attributes indexed by sample_id: x, y and the covariates.
    covariates : GPR inputs (sample columns and/or metal symbols used as log values).
    categorical : covariates treated as classes.
    coordinates : add x, y to the inputs.
    grid : optional prediction cells with x, y and covariates; the grid model uses only the
        inputs the grid has (reported in ``grid_inputs``).
    em_fits : EM fits per metal (as from :func:`hmlib.baselines.fit_em`); fitted here if absent.
    seed : seed of the mixtures and the GPR optimizer restarts.

    Returns
    -------
    dict with
      ``samples``: sample_id, medium, metal, concentration, background, background_sd, excess,
      log_background, log_background_sd, p_background, in_training;
      ``grid``: (or None) cell, x, y, medium, metal, background, background_sd;
      ``models``: per metal the sample model; ``grid_models``: per metal the grid model;
      ``summary``: one row per metal (inputs, n_train, CV RMSE of GPR and static, noise);
      ``grid_inputs``: list of the grid model's inputs.
    """
    if not concentrations_wide.index.equals(sites.index):
        sites = sites.reindex(concentrations_wide.index)
    metals = list(metals or concentrations_wide.columns)
    sample_rows, grid_rows, summary = [], [], []
    models, grid_models = {}, {}
    grid_cov = None
    if grid is not None:
        grid_cov = [c for c in covariates if c in grid.columns]
    for i, metal in enumerate(metals):
        c = concentrations_wide[metal].to_numpy(float)
        ok = np.isfinite(c) & (c > 0)
        fit = (em_fits or {}).get(metal) or fit_em(c[ok], log_transform=log_transform,
                                                    max_components=em_max_components, min_weight=em_min_weight,
                                                    seed=seed)
        p_bg = em_background_probability(fit, c)
        train = ok & (p_bg > 0.5)
        feats, num, cat = build_features(sites, covariates=covariates, categorical=list(categorical),
                                         concentrations_wide=concentrations_wide, coordinates=coordinates,
                                         exclude_metal=metal)
        s_i = int(np.random.SeedSequence([seed, i]).generate_state(1)[0] % (2**31))
        model = fit_background_gpr(feats[train], np.log(c[train]), numeric=num, categorical=cat, metal=metal,
                                   medium=medium, seed=s_i, n_restarts=n_restarts)
        models[metal] = model
        pred = predict_background(model, feats)
        sample_rows.append(pd.DataFrame({
            "sample_id": concentrations_wide.index.to_numpy(), "medium": medium, "metal": metal,
            "concentration": c, "background": pred["background"].to_numpy(),
            "background_sd": pred["background_sd"].to_numpy(),
            "excess": anthropogenic_excess(c, pred["background"].to_numpy()),
            "log_background": pred["log_mean"].to_numpy(), "log_background_sd": pred["log_sd"].to_numpy(),
            "p_background": p_bg, "in_training": train}))
        row = {"medium": medium, "metal": metal, "inputs": ", ".join(num + cat), "n_train": model.n_train,
               "n_total": int(ok.sum()), "em_components": fit.n_components, "noise_sd_log": model.noise_sd,
               "cv_rmse_gpr_log": model.cv_rmse_gpr, "cv_rmse_static_log": model.cv_rmse_static,
               "grid_inputs": None, "grid_cv_rmse_gpr_log": np.nan}
        if grid is not None:
            gfeats_tr, gnum, gcat = build_features(sites, covariates=grid_cov, categorical=list(categorical),
                                                   concentrations_wide=None, coordinates=coordinates)
            gmodel = fit_background_gpr(gfeats_tr[train], np.log(c[train]), numeric=gnum, categorical=gcat,
                                        metal=metal, medium=medium, seed=s_i, n_restarts=n_restarts)
            grid_models[metal] = gmodel
            gfeats, _, _ = build_features(grid, covariates=grid_cov, categorical=list(categorical),
                                          concentrations_wide=None, coordinates=coordinates)
            gp = predict_background(gmodel, gfeats)
            grid_rows.append(pd.DataFrame({"cell": np.arange(len(grid)), "x": grid["x"].to_numpy(),
                                           "y": grid["y"].to_numpy(), "medium": medium, "metal": metal,
                                           "background": gp["background"].to_numpy(),
                                           "background_sd": gp["background_sd"].to_numpy()}))
            row["grid_inputs"] = ", ".join(gnum + gcat)
            row["grid_cv_rmse_gpr_log"] = gmodel.cv_rmse_gpr
        summary.append(row)
    return {"samples": pd.concat(sample_rows, ignore_index=True),
            "grid": pd.concat(grid_rows, ignore_index=True) if grid_rows else None,
            "models": models, "grid_models": grid_models, "summary": pd.DataFrame(summary),
            "grid_inputs": (grid_cov or []) + (["x", "y"] if coordinates else []) if grid is not None else []}


# --------------------------------------------------------------------------------------------
# report helpers
# --------------------------------------------------------------------------------------------
def methods_text(*, covariates: list[str], coordinates: bool, grid_inputs: list[str] | None,
                 grid_dropped: list[str] | None, em_min_weight: float, metals: list[str] = ()) -> str:
    """Methods paragraph of the adaptive background (pandoc markdown).

    ``metals``: the region's metal symbols, to tell lithogenic-element inputs from sample covariates.
    """
    ins = [f"`{c}`" for c in covariates] + (["the coordinates $x, y$"] if coordinates else [])
    lith = [c for c in covariates if c in set(metals)]
    lith_txt = (f" (the lithogenic elements {', '.join(lith)} as natural logs; a metal is never an input of "
                "its own model)" if lith else "")
    grid = ""
    if grid_inputs is not None:
        dropped = (f"; {', '.join(f'`{c}`' for c in grid_dropped)} "
                   f"{'is' if len(grid_dropped) == 1 else 'are'} not available for the grid cells and "
                   f"{'was' if len(grid_dropped) == 1 else 'were'} left out" if grid_dropped else "")
        grid = (" For the map, a second GPR with only the inputs the prediction grid carries "
                f"({', '.join(f'`{c}`' for c in grid_inputs)}{dropped}) was fitted to the same training "
                "samples and predicted on every grid cell.")
    return f"""
**Adaptive background.** A single regional value ignores that the natural background changes with
parent material, soil and place, which makes a static background misjudge samples
[@sun2025adaptive]. Following the sequential workflow of @sun2025adaptive, the samples whose posterior
probability of belonging to the EM background component (or to a lower one) exceeds 0.5 were taken as
background samples (background component: lowest mean among the components holding at least
{em_min_weight:.0%} of the samples; when BIC selects a single component, all samples are background). Their
log concentration was regressed on {', '.join(ins)} with a Gaussian process [@rasmussen2006;
@pedregosa2011sklearn]:

$$\\ln B(\\mathbf x) \\sim \\mathcal{{GP}}(m, k),\\qquad k(\\mathbf x, \\mathbf x') = \\sigma_f^2
\\exp\\Big(-\\tfrac12\\sum_j \\frac{{(x_j - x'_j)^2}}{{\\ell_j^2}}\\Big) + \\sigma_n^2\\,\\delta_{{\\mathbf x\\mathbf x'}},$$

with standardised numeric inputs{lith_txt}, one-hot classes, one length scale
per input and hyperparameters by maximum marginal likelihood. The background of each sample is the
predictive median $B = e^{{\\mu}}$, its standard deviation that of the log-normal predictive distribution,
$\\mathrm{{SD}}(B) = e^{{\\mu + s^2/2}}\\sqrt{{e^{{s^2}} - 1}}$, and the anthropogenic excess
$E = \\max(C - B, 0)$. Five-fold cross-validation on the background samples (kernel hyperparameters held
at the full fit) compares the GPR with a static background (the training mean of $\\ln C$).{grid}
"""


def summary_display(summary: pd.DataFrame) -> pd.DataFrame:
    """Reader's version of the per-metal model summary."""
    out = pd.DataFrame({
        "Metal": summary["metal"], "Inputs": summary["inputs"],
        "EM components": summary["em_components"].astype(int),
        "Background samples": summary["n_train"].astype(int).astype(str) + " / " + summary["n_total"].astype(int).astype(str),
        "CV RMSE GPR (ln)": summary["cv_rmse_gpr_log"], "CV RMSE static (ln)": summary["cv_rmse_static_log"],
        "Nugget SD (ln)": summary["noise_sd_log"]})
    if summary["grid_inputs"].notna().any():
        out["CV RMSE grid model (ln)"] = summary["grid_cv_rmse_gpr_log"]
    return out


def excess_summary(samples: pd.DataFrame) -> pd.DataFrame:
    """Per medium and metal: median background, samples with excess > 0 and above background + 2 SD."""
    rows = []
    for (medium, metal), g in samples.groupby(["medium", "metal"], sort=False):
        c = g["concentration"]
        rows.append({"medium": medium, "metal": metal, "median_background": g["background"].median(),
                     "min_background": g["background"].min(), "max_background": g["background"].max(),
                     "n_excess": int((g["excess"] > 0).sum()),
                     "n_above_2sd": int((c > g["background"] + 2 * g["background_sd"]).sum()),
                     "n_total": int(c.notna().sum()), "median_excess_of_exceeding": g.loc[g["excess"] > 0, "excess"].median(),
                     "share_excess_of_total": float(g["excess"].sum() / c.sum()) if c.sum() > 0 else np.nan})
    return pd.DataFrame(rows)


def plot_maps(table: pd.DataFrame, *, value: str, unit: str, coordinate_unit: str = "m", ncols: int = 4,
              cell: bool = False, scale: str = "log", cmap: str = "viridis", title_suffix: str = ""):
    """One map panel per metal of ``value`` (background, background_sd or excess) at points or grid cells.

    ``scale``: colour scale 'log', 'sqrt' (good for excesses, which span zero to a few hot spots) or
    'linear'. Zero values (no excess) at points are drawn in light grey.
    """
    from matplotlib.colors import LogNorm, Normalize, PowerNorm
    from matplotlib.ticker import MaxNLocator

    from .baselines import _plain_log_ticks

    from .plots import small_multiples

    metals = list(dict.fromkeys(table["metal"]))
    fig, axes = small_multiples(len(metals), ncols=ncols, panel_size=(1.85, 1.85))
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
            sc = ax.scatter(g["x"][pos], g["y"][pos], c=v[pos], s=1.2 if cell else 7, marker="s" if cell else "o",
                            cmap=cmap, norm=norm, linewidths=0)
            cb = fig.colorbar(sc, ax=ax, shrink=0.8)
            if isinstance(norm, LogNorm):
                _plain_log_ticks(cb.ax.yaxis)
            cb.ax.tick_params(labelsize=6)
        ax.set_title(f"{metal} {title_suffix}({unit})", fontsize=8)
        ax.set_aspect("equal")
        ax.xaxis.set_major_locator(MaxNLocator(3))
        ax.yaxis.set_major_locator(MaxNLocator(4))
        ax.tick_params(labelsize=6)
    fig.supxlabel(f"x ({coordinate_unit})", fontsize=8)
    fig.supylabel(f"y ({coordinate_unit})", fontsize=8)
    fig.tight_layout()
    return fig
