"""Machine-learning risk drivers: XGBoost regression with SHAP interpretation and honest validation.

The workflow follows Wu et al. (2025, section 2.5 and Text S4) [@wu2025tracing]: a gradient-boosted
tree ensemble (XGBoost [@chen2016xgboost]) predicts an ecological-risk target (by default the
potential ecological risk index PERI of the indices stage) from environmental, geochemical and
human predictors; predictors are standardised, correlated clusters are pruned to their most
informative member, predictors are selected by their share of the model's gain (> 0.01) or as
the top k, and SHAP values [@lundberg2020tree] explain the contribution and direction of each
predictor. Beyond Wu et al. (2025), the validation here is nested and spatially honest:

* every step that looks at the response (pruning, selection, hyperparameter search) is
  repeated inside each training fold (:func:`fit_driver_pipeline` called by
  :func:`cross_validate`), so the cross-validated errors are not optimistic;
* folds are drawn both at random and by spatial blocks (k-means clusters of the coordinates,
  :func:`spatial_block_folds`), because random folds on spatially autocorrelated data
  overstate predictive skill [@roberts2017cv];
* XGBoost is compared with a Random Forest [@breiman2001rf] and a linear model on the same
  folds (:func:`summarize_cv`, :func:`compare_learners`).

References
----------
Wu, Q. et al. (2025) Tracing threats across the land-marine transition areas: decoding heavy metal
sources and risks in soil-water-sediment systems of northern and eastern coastal China. Marine
Pollution Bulletin. https://doi.org/10.1016/j.marpolbul.2025.118969

Chen, T., Guestrin, C. (2016) XGBoost: a scalable tree boosting system. KDD '16.
https://doi.org/10.1145/2939672.2939785

Lundberg, S.M. et al. (2020) From local explanations to global understanding with explainable AI
for trees. Nature Machine Intelligence 2, 56-67. https://doi.org/10.1038/s42256-019-0138-9

Roberts, D.R. et al. (2017) Cross-validation strategies for data with temporal, spatial,
hierarchical, or phylogenetic structure. Ecography 40, 913-929. https://doi.org/10.1111/ecog.02881

Breiman, L. (2001) Random forests. Machine Learning 45, 5-32. https://doi.org/10.1023/A:1010933404324
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .progress import track

__all__ = [
    "SEARCH_SPACE",
    "Standardizer",
    "DriverFit",
    "CVResult",
    "parse_target",
    "target_from_indices",
    "encode_features",
    "fit_standardizer",
    "prune_correlated",
    "gain_shares",
    "select_features",
    "inner_splits",
    "search_xgboost",
    "fit_driver_pipeline",
    "random_folds",
    "spatial_block_folds",
    "assign_blocks_to_folds",
    "regression_metrics",
    "cross_validate",
    "summarize_cv",
    "compare_learners",
    "Skill",
    "assess_skill",
    "skill_statement",
    "shap_values",
    "importance_table",
    "spatial_share",
    "driver_table",
    "predict_frame",
    "plot_observed_vs_predicted",
    "plot_shap_summary",
    "plot_shap_bar",
    "plot_dependence",
    "plot_cv_comparison",
    "plot_grid_map",
    "plot_folds",
    "needed_predictors",
    "MODEL_LABELS",
    "DriverData",
    "assemble_dataset",
    "DriverAnalysis",
    "analyse_drivers",
    "methods_text",
    "results_text",
    "exploratory_text",
    "readable_feature",
    "compare_with_truth",
    "truth_text",
    "cv_display",
]

#: Hyperparameter space searched (seeded random draws of ``n_search`` combinations).
SEARCH_SPACE: dict[str, list] = {
    "n_estimators": [100, 200, 300],
    "max_depth": [2, 3, 4],
    "learning_rate": [0.05, 0.1],
    "subsample": [0.8, 1.0],
    "min_child_weight": [1, 3, 5],
}


# --- target and features -----------------------------------------------------------------------
def parse_target(target: str, *, metals: list[str]) -> dict:
    """How a target name is read: ``{'kind': 'index'|'metal', 'index': ..., 'metal': ...}``.

    ``'PERI'`` -> index PERI of all metals; ``'Igeo:Cd'`` -> index Igeo of Cd; a metal symbol of
    the region (``'Cd'``) -> that metal's concentration.

    Parameters
    ----------
    target : str
        Target name (``'PERI'``, ``'Igeo:Cd'`` or a metal symbol).
    metals : list of str
        Metal symbols of the region.

    Returns
    -------
    dict
        Keys kind (``'index'`` or ``'metal'``), index (str or None) and metal (str, ``'all'`` for
        whole-sample indices).
    """
    t = str(target).strip()
    if not t:
        raise ValueError("target must be a non-empty name such as 'PERI', 'Igeo:Cd' or a metal symbol")
    if ":" in t:
        idx, metal = (s.strip() for s in t.split(":", 1))
        return {"kind": "index", "index": idx, "metal": metal}
    if t in metals:
        return {"kind": "metal", "index": None, "metal": t}
    return {"kind": "index", "index": t, "metal": "all"}


def target_from_indices(indices: pd.DataFrame, *, index: str, metal: str = "all", medium: str) -> pd.Series:
    """One index's values per sample from ``tables/indices.csv`` (long: sample_id, medium, metal, index, value).

    Returns a Series indexed by sample_id. Raises ``ValueError`` naming the indices present when
    the requested one is absent.

    Parameters
    ----------
    indices : pandas.DataFrame
        Long index table (sample_id, medium, metal, index, value).
    index : str
        Index name (e.g. ``'PERI'``).
    metal : str, default 'all'
        Metal of the index, ``'all'`` for whole-sample indices.
    medium : str
        Medium to select.

    Returns
    -------
    pandas.Series
        Index values (float) indexed by sample_id, named ``index``.
    """
    need = {"sample_id", "medium", "metal", "index", "value"}
    if not need <= set(indices.columns):
        raise ValueError(f"indices table must have columns {sorted(need)}, got {list(indices.columns)}")
    sel = indices[(indices["index"] == index) & (indices["metal"].astype(str) == metal)
                  & (indices["medium"] == medium)]
    if sel.empty:
        have = sorted({f"{i}:{m}" for i, m in zip(indices["index"], indices["metal"].astype(str))})[:30]
        raise ValueError(f"no rows for index {index!r}, metal {metal!r}, medium {medium!r} in the indices table; "
                         f"present (index:metal): {have}")
    if sel["sample_id"].duplicated().any():
        raise ValueError(f"index {index!r} has several rows per sample for metal {metal!r}, medium {medium!r}")
    return pd.Series(sel["value"].to_numpy(float), index=sel["sample_id"].to_numpy(), name=f"{index}")


def encode_features(frame: pd.DataFrame, *, numeric: list[str], categorical: list[str],
                    levels: dict[str, list[str]] | None = None) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Design matrix: numeric columns as floats, categorical columns one-hot (``'col=level'``).

    Parameters
    ----------
    frame : the predictors (not modified).
    numeric, categorical : column names.
    levels : categorical levels to encode (from the training data, so that new data such as a
        prediction grid get the same columns); default: the sorted levels present in ``frame``.

    Returns
    -------
    (X, levels) : X has one column per numeric predictor and one 0/1 column per level;
    ``X.attrs['source']`` maps each column to its original predictor.
    """
    missing = [c for c in [*numeric, *categorical] if c not in frame.columns]
    if missing:
        raise ValueError(f"predictor columns {missing} not found; available: {list(frame.columns)}")
    out = {}
    source = {}
    for c in numeric:
        v = pd.to_numeric(frame[c], errors="coerce")
        bad = v.isna() & frame[c].notna()
        if bad.any():
            raise ValueError(f"numeric predictor {c!r} has non-numeric values such as {frame.loc[bad, c].iloc[0]!r}; "
                             f"list it as categorical")
        out[c] = v.to_numpy(float)
        source[c] = c
    lev = {} if levels is None else {k: list(v) for k, v in levels.items()}
    for c in categorical:
        s = frame[c].astype("string")
        if c not in lev:
            lev[c] = sorted(s.dropna().unique().tolist())
        for level in lev[c]:
            name = f"{c}={level}"
            col = (s == level).astype("Float64").to_numpy(dtype=float, na_value=np.nan)
            out[name] = col
            source[name] = c
    X = pd.DataFrame(out, index=frame.index)
    X.attrs["source"] = source
    return X, lev


@dataclass
class Standardizer:
    """Column means and standard deviations of a training design matrix.

    Attributes
    ----------
    mean, sd : Series indexed by feature name (sd > 0).
    """

    mean: pd.Series
    sd: pd.Series

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """:math:`x'_j = (x_j - \\mu_j)/\\sigma_j` (Wu et al. 2025, eq. 3-2) for the fitted columns."""
        cols = list(self.mean.index)
        missing = [c for c in cols if c not in X.columns]
        if missing:
            raise ValueError(f"columns {missing} of the training design are missing from the data")
        Z = (X[cols] - self.mean) / self.sd
        Z.attrs = dict(X.attrs)
        return Z


def fit_standardizer(X: pd.DataFrame) -> Standardizer:
    """Means and standard deviations (ddof=1) of the columns of ``X``; constant columns are an error.

    .. math:: x'_j = \\frac{x_j - \\mu_j}{\\sigma_j}

    (Wu et al. 2025, Text S4, eq. 3-2).

    Parameters
    ----------
    X : pandas.DataFrame
        Training features, samples x features.

    Returns
    -------
    Standardizer
        Column means and standard deviations.

    References
    ----------
    Wu et al. (2025) https://doi.org/10.1016/j.marpolbul.2025.118969
    """
    sd = X.std(ddof=1)
    const = sd.index[~(sd > 0)].tolist()
    if const:
        raise ValueError(f"features {const} are constant in the training data; drop them first")
    return Standardizer(mean=X.mean(), sd=sd)


def _drop_constant(X: pd.DataFrame) -> pd.DataFrame:
    sd = X.std(ddof=1)
    keep = sd.index[sd > 0]
    Y = X[keep]
    Y.attrs = dict(X.attrs)
    return Y


def prune_correlated(X: pd.DataFrame, y, *, threshold: float = 0.8) -> pd.DataFrame:
    """Group features whose pairwise :math:`|r|` exceeds ``threshold`` and keep the most informative of each group.

    Groups are the clusters of complete-linkage hierarchical clustering on the distance
    :math:`1 - |r_{jk}|` (Pearson correlation), cut at :math:`1 - \\text{threshold}`, so every pair
    inside a group has :math:`|r| \\ge` threshold. Within a group, the member with the largest
    absolute Spearman correlation with the response is kept (ties: the first in column order).
    Wu et al. (2025, section 2.5) "retain only the most informative variables within correlated
    clusters" without stating the criterion; the rank correlation with the response is our choice
    (robust to skew and monotone transforms). Clustering with scipy.

    Parameters
    ----------
    X : pandas.DataFrame
        Features, samples x features.
    y : array-like
        Response values of the samples.
    threshold : float, default 0.8
        |r| above which features are grouped.

    Returns
    -------
    DataFrame feature, cluster, abs_spearman, kept (one row per column of ``X``, in order).

    References
    ----------
    Wu et al. (2025) https://doi.org/10.1016/j.marpolbul.2025.118969
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform
    from scipy.stats import spearmanr

    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    yv = np.asarray(y, dtype=float)
    if len(yv) != len(X):
        raise ValueError(f"y has {len(yv)} values for {len(X)} rows of X")
    cols = list(X.columns)
    if len(cols) == 0:
        raise ValueError("X has no columns")
    info = []
    for c in cols:
        r = spearmanr(X[c].to_numpy(float), yv).statistic
        info.append(0.0 if not np.isfinite(r) else abs(float(r)))
    if len(cols) == 1:
        return pd.DataFrame({"feature": cols, "cluster": [1], "abs_spearman": info, "kept": [True]})
    r = np.corrcoef(X.to_numpy(float), rowvar=False)
    d = 1.0 - np.abs(np.nan_to_num(r, nan=0.0))
    np.fill_diagonal(d, 0.0)
    d = np.clip((d + d.T) / 2, 0.0, None)
    z = linkage(squareform(d, checks=False), method="complete")
    cl = fcluster(z, t=1.0 - threshold, criterion="distance")
    out = pd.DataFrame({"feature": cols, "cluster": cl, "abs_spearman": info})
    best = out.groupby("cluster")["abs_spearman"].transform("max")
    first = out[out["abs_spearman"] == best].groupby("cluster")["feature"].transform("first")
    kept_names = set(first)
    out["kept"] = out["feature"].isin(kept_names)
    return out


def gain_shares(model, features: list[str]) -> pd.Series:
    """Each feature's share of the total gain of a fitted XGBoost model (sums to 1).

    .. math:: g_j = \\frac{G_j}{\\sum_k G_k}, \\qquad G_j = \\sum_{\\text{splits on } j} \\text{gain}

    Total gain rather than XGBoost's default average gain per split, which inflates a feature
    used in a single lucky split. Features never used get 0.

    Parameters
    ----------
    model : xgboost.XGBRegressor
        Fitted XGBoost model.
    features : list of str
        Feature names in the model's column order.

    Returns
    -------
    pandas.Series
        Gain share (fraction 0-1) per feature.

    References
    ----------
    Chen and Guestrin (2016) https://doi.org/10.1145/2939672.2939785
    """
    score = model.get_booster().get_score(importance_type="total_gain")
    names = model.get_booster().feature_names
    if names is None:
        names = [f"f{i}" for i in range(len(features))]
    by_name = dict(zip(names, features))
    g = pd.Series(0.0, index=list(features))
    for k, v in score.items():
        g[by_name.get(k, k)] = float(v)
    tot = g.sum()
    return g / tot if tot > 0 else g


def select_features(shares: pd.Series, *, selection: str = "gain_share", min_gain_share: float = 0.01,
                    top_k: int = 10) -> list[str]:
    """Features kept for the final model (Wu et al. 2025, section 2.5).

    ``gain_share``: features whose gain share exceeds ``min_gain_share`` (the paper's 0.01),
    at most ``top_k`` of them (the paper's top 10); ``top_k``: the ``top_k`` largest shares.
    At least one feature (the largest share) is always kept. Order: decreasing share.

    Parameters
    ----------
    shares : pandas.Series
        Gain share per feature (see :func:`gain_shares`).
    selection : {'gain_share', 'top_k'}, default 'gain_share'
        Selection rule.
    min_gain_share : float, default 0.01
        Minimum gain share for ``'gain_share'``.
    top_k : int, default 10
        Maximum number of features kept.

    Returns
    -------
    list of str
        Selected feature names, by decreasing share.
    """
    s = shares.sort_values(ascending=False, kind="stable")
    if selection == "gain_share":
        sel = s[s > min_gain_share].index[:top_k].tolist()
    elif selection == "top_k":
        sel = s.index[:top_k].tolist()
    else:
        raise ValueError(f"selection must be 'gain_share' or 'top_k', got {selection!r}")
    return sel or s.index[:1].tolist()


def _xgb(params: dict, seed: int):
    from xgboost import XGBRegressor

    return XGBRegressor(objective="reg:squarederror", tree_method="exact", n_jobs=1, random_state=seed,
                        **params)


def _default_xgb_params() -> dict:
    return {"n_estimators": 200, "max_depth": 3, "learning_rate": 0.1, "subsample": 1.0, "min_child_weight": 1}


def inner_splits(n: int, *, groups=None, inner_folds: int = 3, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/test index pairs of the inner (tuning) cross-validation.

    With ``groups`` (e.g. the spatial block of each sample, :func:`spatial_block_folds`) whole
    groups are held out (scikit-learn ``GroupKFold``, at most as many folds as groups), so the
    tuning is validated the same way as the outer spatial-block CV; without, shuffled ``KFold``.

    Parameters
    ----------
    n : number of samples.
    groups : group label of each sample, or None.
    inner_folds : number of folds (reduced to the number of groups when there are fewer).
    seed : seed of the shuffled folds (ignored with groups: ``GroupKFold`` is deterministic).

    Returns
    -------
    list of (train indices, test indices).

    References
    ----------
    Roberts et al. (2017) https://doi.org/10.1111/ecog.02881
    """
    from sklearn.model_selection import GroupKFold, KFold

    idx = np.arange(n)
    if groups is None:
        k = min(inner_folds, n)
        if k < 2:
            raise ValueError(f"need at least 2 samples for inner cross-validation, got {n}")
        return list(KFold(n_splits=k, shuffle=True, random_state=seed).split(idx))
    g = np.asarray(groups)
    if len(g) != n:
        raise ValueError(f"groups has {len(g)} labels for {n} samples")
    k = min(inner_folds, len(np.unique(g)))
    if k < 2:
        raise ValueError("inner spatial-block cross-validation needs samples from at least 2 blocks; "
                         f"the training data hold {len(np.unique(g))}")
    return list(GroupKFold(n_splits=k).split(idx, groups=g))


def search_xgboost(X: pd.DataFrame, y, *, seed: int, n_search: int = 6, inner_folds: int = 3,
                   space: dict | None = None, groups=None) -> tuple[dict, pd.DataFrame]:
    """Seeded random search of XGBoost hyperparameters by inner k-fold CV (RMSE).

    Draws ``n_search`` combinations from ``space`` (default :data:`SEARCH_SPACE`) with
    scikit-learn's ``ParameterSampler`` seeded by ``seed``; the combination with the lowest mean
    inner-CV RMSE wins. With ``groups`` the inner folds hold out whole groups (spatial blocks,
    :func:`inner_splits`), so tuning does not reward interpolation between neighbours.

    Parameters
    ----------
    X : design matrix (no missing values).
    y : response.
    seed : seed of the draws, the folds and the models.
    n_search : combinations tried.
    inner_folds : folds of the inner cross-validation.
    space : parameter lists to draw from.
    groups : spatial block of each sample (or None for shuffled folds).

    Returns
    -------
    (best_params, results) : the winning combination and one row per combination with
    ``rmse_mean`` and ``rmse_sd`` over the inner folds.

    References
    ----------
    Chen and Guestrin (2016) https://doi.org/10.1145/2939672.2939785
    """
    from sklearn.model_selection import ParameterSampler

    yv = np.asarray(y, dtype=float)
    space = SEARCH_SPACE if space is None else space
    cands = list(ParameterSampler(space, n_iter=n_search, random_state=seed))
    splits = inner_splits(len(yv), groups=groups, inner_folds=inner_folds, seed=seed)
    Xv = X.to_numpy(float)
    rows = []
    for p in cands:
        errs = []
        for tr, te in splits:
            m = _xgb(p, seed).fit(Xv[tr], yv[tr])
            errs.append(float(np.sqrt(np.mean((m.predict(Xv[te]) - yv[te]) ** 2))))
        rows.append({**p, "rmse_mean": float(np.mean(errs)), "rmse_sd": float(np.std(errs, ddof=1))})
    res = pd.DataFrame(rows)
    best = cands[int(np.argmin(res["rmse_mean"].to_numpy()))]
    return dict(best), res


@dataclass
class DriverFit:
    """A fitted driver pipeline (standardise, prune, select, tune, fit).

    Attributes
    ----------
    standardizer : column means/sds of the training design (non-constant columns).
    pruning : DataFrame feature, cluster, abs_spearman, kept (from :func:`prune_correlated`).
    shares : gain share of each kept feature in the screening XGBoost model (default parameters).
    selected : features of the final models, in decreasing share.
    params : tuned XGBoost hyperparameters.
    search : DataFrame of the hyperparameter search.
    xgb, rf, linear : models fitted on the standardised selected features.
    features : all columns of the (non-constant) design.
    spatial : columns of the spatial term (coordinates; not candidate drivers), part of ``selected``.
    """

    standardizer: Standardizer
    pruning: pd.DataFrame
    shares: pd.Series
    selected: list[str]
    params: dict
    search: pd.DataFrame
    xgb: object
    rf: object
    linear: object
    features: list[str] = field(default_factory=list)
    spatial: list[str] = field(default_factory=list)

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Standardised selected features of new data (same design columns as the training data)."""
        return self.standardizer.transform(X)[self.selected]

    def predict(self, X: pd.DataFrame, model: str = "xgb") -> np.ndarray:
        """Predictions of ``model`` ('xgb', 'rf' or 'linear') for a design matrix ``X``."""
        m = {"xgb": self.xgb, "rf": self.rf, "linear": self.linear}[model]
        return m.predict(self.transform(X).to_numpy(float))


def fit_driver_pipeline(X: pd.DataFrame, y, *, seed: int, correlation_threshold: float = 0.8,
                        selection: str = "gain_share", min_gain_share: float = 0.01, top_k: int = 10,
                        n_search: int = 6, rf_trees: int = 300, groups=None,
                        spatial: tuple[str, ...] = ()) -> DriverFit:
    """Standardise, prune correlated clusters, select by gain, tune and fit XGBoost, RF and linear models.

    Steps (Wu et al. 2025, section 2.5 and Text S4): (1) standardise every predictor
    (:func:`fit_standardizer`); (2) prune correlated clusters (:func:`prune_correlated`);
    (3) fit a screening XGBoost model with default hyperparameters on the kept features and
    compute gain shares (:func:`gain_shares`); (4) select (:func:`select_features`); (5) tune
    XGBoost on the selected features (:func:`search_xgboost`; inner folds hold out whole
    ``groups``, the spatial blocks, when given) and fit the final model
    :math:`\\hat y_i = \\sum_{k=1}^K f_k(x_i)` (eq. 3-3); (6) fit a Random Forest
    (``rf_trees`` trees, scikit-learn defaults otherwise) and an ordinary least-squares linear
    model on the same features, for comparison. All seeded by ``seed``.

    Columns named in ``spatial`` (the coordinates, when the spatial term is wanted) are not
    candidate drivers: they skip pruning and selection and are appended to the selected
    features, so their contribution can be reported apart (:func:`spatial_share`).

    Parameters
    ----------
    X : design matrix (from :func:`encode_features`), no missing values.
    y : response.
    seed : seed of every model and draw.
    correlation_threshold, selection, min_gain_share, top_k : pruning and selection settings.
    n_search : hyperparameter combinations tried.
    rf_trees : trees of the comparison Random Forest.
    groups : spatial block of each row, for the inner tuning folds (None: shuffled folds).
    spatial : columns forming the spatial term.

    Returns
    -------
    DriverFit

    References
    ----------
    Wu et al. (2025) https://doi.org/10.1016/j.marpolbul.2025.118969 ;
    Chen and Guestrin (2016) https://doi.org/10.1145/2939672.2939785
    """
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LinearRegression

    yv = np.asarray(y, dtype=float)
    if len(yv) != len(X):
        raise ValueError(f"y has {len(yv)} values for {len(X)} rows of X")
    if X.isna().any().any() or not np.all(np.isfinite(yv)):
        raise ValueError("X and y must not contain missing values: drop incomplete samples first")
    X1 = _drop_constant(X)
    spatial_cols = [c for c in X1.columns if c in set(spatial)]
    cand = [c for c in X1.columns if c not in set(spatial_cols)]
    if not cand:
        raise ValueError("every candidate driver is constant in the training data")
    st = fit_standardizer(X1)
    Z = st.transform(X1)
    pr = prune_correlated(Z[cand], yv, threshold=correlation_threshold)
    kept = pr.loc[pr["kept"], "feature"].tolist()
    screen = _xgb(_default_xgb_params(), seed).fit(Z[kept].to_numpy(float), yv)
    shares = gain_shares(screen, kept)
    selected = select_features(shares, selection=selection, min_gain_share=min_gain_share, top_k=top_k)
    selected = selected + spatial_cols
    Zs = Z[selected]
    params, search = search_xgboost(Zs, yv, seed=seed, n_search=n_search, groups=groups)
    xgbm = _xgb(params, seed).fit(Zs.to_numpy(float), yv)
    rf = RandomForestRegressor(n_estimators=rf_trees, random_state=seed, n_jobs=1).fit(Zs.to_numpy(float), yv)
    lin = LinearRegression().fit(Zs.to_numpy(float), yv)
    return DriverFit(standardizer=st, pruning=pr, shares=shares, selected=selected, params=params, search=search,
                     xgb=xgbm, rf=rf, linear=lin, features=list(X1.columns), spatial=spatial_cols)


# --- folds and validation ----------------------------------------------------------------------
def random_folds(n: int, *, n_folds: int = 5, seed: int) -> np.ndarray:
    """Fold number (0..n_folds-1) of each of ``n`` samples: shuffled k-fold (scikit-learn ``KFold``).

    Parameters
    ----------
    n : int
        Number of samples.
    n_folds : int, default 5
        Number of folds.
    seed : int
        Random seed of the shuffle.

    Returns
    -------
    numpy.ndarray of int, shape (n,)
        Fold number of each sample.
    """
    from sklearn.model_selection import KFold

    if n < n_folds:
        raise ValueError(f"need at least n_folds={n_folds} samples, got {n}")
    f = np.empty(n, dtype=int)
    for k, (_, te) in enumerate(KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.arange(n))):
        f[te] = k
    return f


def spatial_block_folds(x, y, *, n_folds: int = 5, n_blocks: int = 20, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Spatial-block folds: k-means clusters of the coordinates, whole clusters assigned to folds.

    The samples are grouped into ``n_blocks`` spatial clusters (k-means on x, y, seeded); the
    clusters are then assigned to ``n_folds`` folds, largest first, each to the fold with the
    fewest samples so far (ties: lowest fold number), so folds are of similar size and no
    cluster is split between training and test data (block cross-validation, Roberts et al.
    2017).

    Parameters
    ----------
    x, y : array-like
        Sample coordinates.
    n_folds : int, default 5
        Number of folds.
    n_blocks : int, default 20
        Number of k-means spatial clusters.
    seed : int
        Random seed of k-means.

    Returns
    -------
    (fold, block) : fold number and cluster number of each sample.

    References
    ----------
    Roberts et al. (2017) https://doi.org/10.1111/ecog.02881
    """
    from sklearn.cluster import KMeans

    xy = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    if xy.ndim != 2 or len(xy) < n_folds:
        raise ValueError(f"need at least n_folds={n_folds} points with x and y, got {len(xy)}")
    if n_blocks < n_folds:
        raise ValueError(f"n_blocks ({n_blocks}) must be >= n_folds ({n_folds})")
    n_blocks = min(n_blocks, len(np.unique(xy, axis=0)))
    block = KMeans(n_clusters=n_blocks, n_init=10, random_state=seed).fit_predict(xy)
    return assign_blocks_to_folds(block, n_folds=n_folds), block


def assign_blocks_to_folds(block, *, n_folds: int) -> np.ndarray:
    """Fold number (0..n_folds-1) of each sample, whole blocks per fold, folds of similar size.

    Blocks are taken largest first (ties: lowest label) and each goes to the fold with the fewest
    samples so far (ties: lowest fold number), a greedy balancing (deterministic, no draw).

    Parameters
    ----------
    block : block label of each sample.
    n_folds : number of folds (at most the number of blocks).

    Returns
    -------
    array of fold numbers, one per sample.
    """
    b = np.asarray(block)
    labels, inv, sizes = np.unique(b, return_inverse=True, return_counts=True)
    if len(labels) < n_folds:
        raise ValueError(f"{len(labels)} blocks cannot fill n_folds={n_folds} folds")
    order = sorted(range(len(labels)), key=lambda i: (-sizes[i], i))
    load = np.zeros(n_folds, dtype=int)
    fold_of_block = np.empty(len(labels), dtype=int)
    for i in order:
        k = int(np.argmin(load))
        fold_of_block[i] = k
        load[k] += sizes[i]
    return fold_of_block[inv]


def regression_metrics(observed, predicted) -> dict[str, float]:
    """R2, RMSE and MAE (scikit-learn); R2 is NaN for fewer than two or constant observations.

    .. math::

        R^2 = 1 - \\frac{\\sum (y_i - \\hat y_i)^2}{\\sum (y_i - \\bar y)^2},\\quad
        \\mathrm{RMSE} = \\sqrt{\\tfrac1n \\sum (y_i - \\hat y_i)^2},\\quad
        \\mathrm{MAE} = \\tfrac1n \\sum |y_i - \\hat y_i|

    Parameters
    ----------
    observed : array-like
        Observed values.
    predicted : array-like
        Predicted values (same unit).

    Returns
    -------
    dict of str to float
        Keys r2 (dimensionless), rmse and mae (unit of the observations).

    References
    ----------
    Wu et al. (2025) https://doi.org/10.1016/j.marpolbul.2025.118969
    Zhao et al. (2026) https://doi.org/10.1038/s41598-026-38887-9 (eqs. 2-4)
    """
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    yo = np.asarray(observed, dtype=float)
    yp = np.asarray(predicted, dtype=float)
    if yo.shape != yp.shape or yo.ndim != 1 or len(yo) == 0:
        raise ValueError(f"observed and predicted must be 1-D of equal non-zero length, got {yo.shape}, {yp.shape}")
    r2 = float(r2_score(yo, yp)) if len(yo) >= 2 and np.ptp(yo) > 0 else float("nan")
    return {"r2": r2, "rmse": float(np.sqrt(mean_squared_error(yo, yp))), "mae": float(mean_absolute_error(yo, yp))}


@dataclass
class CVResult:
    """Cross-validation of the driver pipeline.

    Attributes
    ----------
    metrics : DataFrame model, cv_scheme, fold, r2, rmse, mae (one row per model, scheme and fold).
    predictions : DataFrame sample index, cv_scheme, fold, observed, and one column per model
        (out-of-fold predictions).
    selection_frequency : DataFrame feature, cv_scheme, n_folds_selected.
    """

    metrics: pd.DataFrame
    predictions: pd.DataFrame
    selection_frequency: pd.DataFrame


def cross_validate(X: pd.DataFrame, y, folds: dict[str, np.ndarray], *, seed: int,
                   groups: dict[str, np.ndarray] | None = None, **pipeline_kwargs) -> CVResult:
    """Cross-validate :func:`fit_driver_pipeline` for each fold scheme; all learners on the same folds.

    The whole pipeline (standardisation, pruning, selection, tuning) is refitted on each
    training fold, so the test fold never influences any choice (nested CV). A baseline
    ``mean`` model predicts the mean of the training fold for every test sample: a learner
    that does not beat it has no transferable skill (:func:`assess_skill`).

    Parameters
    ----------
    X : design matrix (from :func:`encode_features`), no missing values.
    y : response.
    folds : scheme name -> fold number per sample (e.g. ``{'random': ..., 'spatial_block': ...}``).
    seed : seed of the models.
    groups : scheme name -> group label per sample used for the inner tuning folds of that
        scheme (the spatial blocks for ``spatial_block``, so tuning never sees a test block's
        neighbours); schemes absent here tune on shuffled folds.
    pipeline_kwargs : passed to :func:`fit_driver_pipeline`.

    Returns
    -------
    CVResult
    """
    yv = np.asarray(y, dtype=float)
    groups = groups or {}
    mrows, prow, freq = [], [], []
    for scheme, f in folds.items():
        f = np.asarray(f)
        if len(f) != len(yv):
            raise ValueError(f"folds[{scheme!r}] has {len(f)} entries for {len(yv)} samples")
        g = groups.get(scheme)
        count: dict[str, int] = {}
        for k in track(np.unique(f), desc=f"{scheme.replace('_', '-')} CV folds", unit="fold"):
            te = f == k
            fit = fit_driver_pipeline(X[~te], yv[~te], seed=seed, groups=None if g is None else np.asarray(g)[~te],
                                      **pipeline_kwargs)
            for feat in fit.selected:
                count[feat] = count.get(feat, 0) + 1
            pr = {}
            for model in ("xgb", "rf", "linear"):
                pr[model] = fit.predict(X[te], model)
            pr["mean"] = np.full(int(te.sum()), float(np.mean(yv[~te])))
            for model, v in pr.items():
                mrows.append({"model": model, "cv_scheme": scheme, "fold": int(k) + 1,
                              **regression_metrics(yv[te], v)})
            prow.append(pd.DataFrame({"row": np.flatnonzero(te), "cv_scheme": scheme, "fold": int(k) + 1,
                                      "observed": yv[te], **pr}))
        freq += [{"feature": a, "cv_scheme": scheme, "n_folds_selected": b} for a, b in count.items()]
    return CVResult(metrics=pd.DataFrame(mrows), predictions=pd.concat(prow, ignore_index=True),
                    selection_frequency=pd.DataFrame(freq))


def summarize_cv(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over folds of R2, RMSE and MAE per model and CV scheme.

    Parameters
    ----------
    metrics : pandas.DataFrame
        Per-fold metrics with columns model, cv_scheme, r2, rmse, mae.

    Returns
    -------
    pandas.DataFrame
        Columns model, cv_scheme, r2_mean, r2_std, rmse_mean, rmse_std, mae_mean, mae_std, n_folds.
    """
    g = metrics.groupby(["model", "cv_scheme"], sort=False)[["r2", "rmse", "mae"]]
    out = g.agg(["mean", "std"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out = out.reset_index()
    out["n_folds"] = g.size().to_numpy()
    return out


MODEL_LABELS = {"xgb": "XGBoost", "rf": "Random Forest", "linear": "Linear (OLS)",
                "mean": "Mean of the training samples (baseline)"}


def compare_learners(metrics: pd.DataFrame) -> str:
    """Plain-words comparison of the learners per CV scheme: which wins on mean RMSE, by how much.

    The margin is given as the relative RMSE reduction of the winner over the runner-up,
    :math:`(\\mathrm{RMSE}_2 - \\mathrm{RMSE}_1)/\\mathrm{RMSE}_2`, together with the number of
    folds in which the winner had the lower RMSE (same folds for every learner).

    Parameters
    ----------
    metrics : pandas.DataFrame
        Per-fold metrics with columns model, cv_scheme, fold, rmse.

    Returns
    -------
    str
        One sentence per CV scheme.
    """
    lines = []
    metrics = metrics[metrics["model"] != "mean"]
    for scheme, grp in metrics.groupby("cv_scheme", sort=False):
        mean = grp.groupby("model")["rmse"].mean().sort_values()
        r2 = grp.groupby("model")["r2"].mean()
        best, second = mean.index[0], mean.index[1]
        wide = grp.pivot(index="fold", columns="model", values="rmse")
        wins = int((wide[best] < wide[second]).sum())
        rel = (mean[second] - mean[best]) / mean[second] * 100 if mean[second] > 0 else 0.0
        lines.append(
            f"With {scheme.replace('_', '-')} folds, {MODEL_LABELS.get(best, best)} has the lowest mean RMSE "
            f"({mean[best]:.3g}; mean R² {r2[best]:.2f}), {rel:.1f} % below {MODEL_LABELS.get(second, second)} "
            f"({mean[second]:.3g}; R² {r2[second]:.2f}); it is better in {wins} of {len(wide)} folds"
            + ("." if len(mean) < 3 else
               f"; {MODEL_LABELS.get(mean.index[2], mean.index[2])} follows ({mean.iloc[2]:.3g}; "
               f"R² {r2[mean.index[2]]:.2f}).")
        )
    return " ".join(lines)


# --- transferable skill --------------------------------------------------------------------------
@dataclass
class Skill:
    """Whether a learner transfers to held-out areas: its CV scores against the training-mean baseline.

    Attributes
    ----------
    has_skill : True when the mean fold :math:`R^2` is above 0 and the mean fold RMSE is below
        that of the baseline that predicts the training mean.
    model, cv_scheme : the learner and the fold design judged.
    r2_mean, r2_sd : mean and standard deviation of the fold :math:`R^2`.
    r2_pooled : :math:`R^2` of all out-of-fold predictions pooled.
    rmse_mean, rmse_baseline : mean fold RMSE of the learner and of the baseline.
    n_folds_better, n_folds : folds in which the learner's RMSE is below the baseline's, of all folds.
    """

    has_skill: bool
    model: str
    cv_scheme: str
    r2_mean: float
    r2_sd: float
    r2_pooled: float
    rmse_mean: float
    rmse_baseline: float
    n_folds_better: int
    n_folds: int


def assess_skill(metrics: pd.DataFrame, predictions: pd.DataFrame, *, model: str = "xgb",
                 cv_scheme: str = "spatial_block") -> Skill:
    """Judge transferable skill from cross-validated scores (:func:`cross_validate`).

    A model has transferable skill when, under ``cv_scheme`` (spatial blocks by default), its
    mean fold :math:`R^2` is positive *and* its mean fold RMSE is below that of the baseline that
    predicts the mean of the training fold:

    .. math::

        \\overline{R^2} > 0 \\quad\\text{and}\\quad
        \\overline{\\mathrm{RMSE}}_{\\text{model}} < \\overline{\\mathrm{RMSE}}_{\\text{mean}}

    Skill under random folds does not count: on spatially autocorrelated data it measures
    interpolation between neighbours, not what the predictors explain (Roberts et al. 2017).

    Parameters
    ----------
    metrics : per-fold scores (columns model, cv_scheme, fold, r2, rmse, mae) including the
        ``mean`` baseline.
    predictions : out-of-fold predictions (columns cv_scheme, observed and one per model).
    model, cv_scheme : the learner and the fold design judged.

    Returns
    -------
    Skill

    References
    ----------
    Roberts et al. (2017) https://doi.org/10.1111/ecog.02881
    """
    m = metrics[metrics["cv_scheme"] == cv_scheme]
    a = m[m["model"] == model].set_index("fold")
    b = m[m["model"] == "mean"].set_index("fold")
    if a.empty or b.empty:
        raise ValueError(f"metrics lack model {model!r} or the 'mean' baseline under cv_scheme {cv_scheme!r}")
    p = predictions[predictions["cv_scheme"] == cv_scheme]
    pooled = regression_metrics(p["observed"].to_numpy(float), p[model].to_numpy(float))["r2"]
    r2m, rm, bm = float(a["r2"].mean()), float(a["rmse"].mean()), float(b["rmse"].mean())
    better = int((a["rmse"] < b["rmse"].reindex(a.index)).sum())
    return Skill(has_skill=bool(np.isfinite(r2m) and r2m > 0 and rm < bm), model=model, cv_scheme=cv_scheme,
                 r2_mean=r2m, r2_sd=float(a["r2"].std(ddof=1)), r2_pooled=float(pooled), rmse_mean=rm,
                 rmse_baseline=bm, n_folds_better=better, n_folds=len(a))


def skill_statement(skill: Skill, *, target_label: str, n_blocks: int, refs: str = "") -> str:
    """The paragraph that opens the results: validation scheme and skill, before any interpretation.

    States the spatial-block score once with its spread over folds and what it means (the share of
    the variation the predictors carry into areas without samples); the per-learner numbers are
    left to the table.

    Parameters
    ----------
    skill : Skill
        Skill summary of the chosen learner under spatial-block CV.
    target_label : str
        Readable name of the target.
    n_blocks : int
        Number of spatial clusters used for the blocks.
    refs : str, default ''
        Cross-references to the scores (e.g. ``"@tbl-ml-cv-metrics"``), appended in parentheses.

    Returns
    -------
    str
        Markdown paragraph.
    """
    learner = MODEL_LABELS.get(skill.model, skill.model)
    gain = (1 - skill.rmse_mean / skill.rmse_baseline) * 100 if skill.rmse_baseline > 0 else np.nan
    ref = f" ({refs})" if refs else ""
    scores = (f"Holding out whole areas ({skill.n_folds} folds of {n_blocks} spatial clusters), {learner} "
              f"predicted {target_label} with R² {skill.r2_mean:.2f} ± {skill.r2_sd:.2f} (mean ± standard deviation "
              f"over folds), beating the training mean in {skill.n_folds_better} of {skill.n_folds} folds{ref}.")
    if skill.has_skill:
        strength = ("weak" if skill.r2_mean < 0.2 else "moderate" if skill.r2_mean < 0.5 else "good")
        return (f"**Validation and skill.** {scores} The skill is {strength}: the predictors carry about "
                f"{100 * max(skill.r2_mean, 0):.0f} % of the variation of {target_label} into areas without samples "
                f"(RMSE {gain:.0f} % below that of the mean), so the drivers below are interpreted with that "
                "weight.")
    why = ""
    if skill.r2_mean <= 0 and skill.n_folds_better > skill.n_folds / 2:
        why = (f" Most folds beat the mean by a little while one or two miss badly, which pulls the mean R² below "
               f"zero; the pooled R² over all held-out samples is {skill.r2_pooled:.2f}.")
    return (f"**No transferable skill.** {scores}{why} The predictors do not carry {target_label} into areas away "
            "from the training samples, so this section reports no drivers and no prediction map.")


# --- interpretation ----------------------------------------------------------------------------
def shap_values(model, X: pd.DataFrame) -> pd.DataFrame:
    """SHAP values of a tree model for the rows of ``X`` (shap ``TreeExplainer``).

    For each sample, :math:`\\hat y_i = \\phi_0 + \\sum_j \\phi_{ij}` (local accuracy): the SHAP
    values :math:`\\phi_{ij}` distribute the prediction's difference from the expected value
    among the features (Lundberg et al. 2020). ``attrs['expected_value']`` holds
    :math:`\\phi_0`.

    Parameters
    ----------
    model : object
        Fitted tree model (e.g. XGBoost, random forest).
    X : pandas.DataFrame
        Rows to explain, with the model's feature columns.

    Returns
    -------
    pandas.DataFrame
        SHAP values (target units), index and columns of ``X``.

    References
    ----------
    Lundberg et al. (2020) https://doi.org/10.1038/s42256-019-0138-9
    """
    import shap

    expl = shap.TreeExplainer(model)
    sv = np.asarray(expl.shap_values(X.to_numpy(float)))
    out = pd.DataFrame(sv, index=X.index, columns=X.columns)
    ev = expl.expected_value
    out.attrs["expected_value"] = float(np.ravel(ev)[0])
    return out


def importance_table(fit: DriverFit, shap_df: pd.DataFrame) -> pd.DataFrame:
    """feature, gain, mean_abs_shap, selected, spatial for every design feature.

    ``gain`` is the gain share in the screening model (NaN for features pruned as correlated and
    for the spatial term, which is not screened); ``mean_abs_shap`` is
    :math:`\\frac1n\\sum_i |\\phi_{ij}|` in the final model (NaN for features not selected);
    ``spatial`` marks the coordinates of the spatial term (never drivers). Sorted by mean |SHAP|
    then gain.

    Parameters
    ----------
    fit : the fitted pipeline.
    shap_df : SHAP values of the final model (:func:`shap_values`).

    Returns
    -------
    DataFrame

    References
    ----------
    Lundberg et al. (2020) https://doi.org/10.1038/s42256-019-0138-9
    """
    feats = fit.features
    mas = shap_df.abs().mean()
    out = pd.DataFrame({
        "feature": feats,
        "gain": [float(fit.shares[f]) if f in fit.shares.index else np.nan for f in feats],
        "mean_abs_shap": [float(mas[f]) if f in mas.index else np.nan for f in feats],
        "selected": [f in fit.selected for f in feats],
        "spatial": [f in fit.spatial for f in feats],
    })
    return out.sort_values(["mean_abs_shap", "gain"], ascending=False, na_position="last").reset_index(drop=True)


def spatial_share(importance: pd.DataFrame) -> float:
    """Share of the spatial term in the model's total mean |SHAP| (NaN when there is no spatial term).

    .. math:: s = \\frac{\\sum_{j \\in \\text{coords}} \\overline{|\\phi_j|}}{\\sum_j \\overline{|\\phi_j|}}

    Parameters
    ----------
    importance : :func:`importance_table`.

    Returns
    -------
    float in [0, 1], or NaN.

    References
    ----------
    Lundberg et al. (2020) https://doi.org/10.1038/s42256-019-0138-9
    """
    sel = importance[importance["selected"]]
    if not sel["spatial"].any():
        return float("nan")
    tot = float(sel["mean_abs_shap"].sum())
    return float(sel.loc[sel["spatial"], "mean_abs_shap"].sum() / tot) if tot > 0 else float("nan")


def driver_table(importance: pd.DataFrame, skill: Skill) -> pd.DataFrame:
    """The drivers reported as results: selected, non-spatial features, ranked by mean |SHAP|.

    Empty (same columns) when the model has no transferable skill (:func:`assess_skill`): a
    ranking of a model that does not predict held-out areas is not evidence of drivers.

    Parameters
    ----------
    importance : :func:`importance_table`.
    skill : :func:`assess_skill` of the interpreted model.

    Returns
    -------
    DataFrame rank, feature, mean_abs_shap, share (of the drivers' total mean |SHAP|), gain.
    """
    d = importance[importance["selected"] & ~importance["spatial"]].copy()
    if not skill.has_skill:
        d = d.iloc[0:0]
    d = d.sort_values("mean_abs_shap", ascending=False)
    tot = float(d["mean_abs_shap"].sum())
    d["share"] = d["mean_abs_shap"] / tot if tot > 0 else np.nan
    d["rank"] = np.arange(1, len(d) + 1)
    return d[["rank", "feature", "mean_abs_shap", "share", "gain"]].reset_index(drop=True)


def predict_frame(fit: DriverFit, frame: pd.DataFrame, *, numeric: list[str], categorical: list[str],
                  levels: dict[str, list[str]], model: str = "xgb") -> np.ndarray:
    """Predictions for new rows (e.g. a prediction grid) carrying the raw predictors.

    Only the predictors behind the selected features (:func:`needed_predictors`) must be
    present; a missing one is an error. Rows with a missing selected predictor get NaN, and so
    do rows whose level of any categorical predictor present in ``frame`` was not seen in
    training (e.g. water cells for a soil model): they lie outside the model's domain.

    Parameters
    ----------
    fit : DriverFit
        Fitted driver models.
    frame : pandas.DataFrame
        Rows with raw predictor columns.
    numeric : list of str
        Numeric predictor names.
    categorical : list of str
        Categorical predictor names.
    levels : dict of str to list of str
        Training levels of each categorical predictor.
    model : {'xgb', 'rf', 'linear'}, default 'xgb'
        Which fitted model predicts.

    Returns
    -------
    numpy.ndarray
        Predicted target per row of ``frame`` (target units; NaN outside the model's domain).
    """
    need = needed_predictors(fit, categorical=categorical)
    absent = [c for c in need if c not in frame.columns]
    if absent:
        raise ValueError(f"the selected features need predictors {absent}, not found in columns {list(frame.columns)}")
    X, _ = encode_features(frame, numeric=[c for c in numeric if c in frame.columns],
                           categorical=[c for c in categorical if c in frame.columns], levels=levels)
    for c in fit.features:
        if c not in X.columns:
            X[c] = 0.0
    Z = fit.transform(X)
    ok = Z.notna().all(axis=1).to_numpy()
    for c in categorical:
        if c in frame.columns:
            ok &= frame[c].astype("string").isin(levels.get(c, [])).fillna(False).to_numpy(dtype=bool)
    out = np.full(len(frame), np.nan)
    if ok.any():
        m = {"xgb": fit.xgb, "rf": fit.rf, "linear": fit.linear}[model]
        out[ok] = m.predict(Z[ok].to_numpy(float))
    return out


def needed_predictors(fit: DriverFit, *, categorical: list[str]) -> list[str]:
    """Raw predictors behind the selected features (``'Rock=Argovian'`` -> ``'Rock'``).

    Parameters
    ----------
    fit : DriverFit
        Fitted driver models.
    categorical : list of str
        Categorical predictor names.

    Returns
    -------
    list of str
        Raw predictor names, in order of first use.
    """
    out = []
    for f in fit.selected:
        base = f.split("=", 1)[0] if "=" in f and f.split("=", 1)[0] in categorical else f
        if base not in out:
            out.append(base)
    return out


# --- figures (matplotlib; return the figure) ----------------------------------------------------------
def plot_observed_vs_predicted(predictions: pd.DataFrame, *, model: str = "xgb", label: str = "target"):
    """Observed vs out-of-fold predicted values, one panel per CV scheme, with the 1:1 line.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Out-of-fold predictions with columns cv_scheme, observed and one column per model.
    model : str, default 'xgb'
        Model column to plot.
    label : str, default 'target'
        Axis label of the target.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt

    schemes = list(dict.fromkeys(predictions["cv_scheme"]))
    fig, axes = plt.subplots(1, len(schemes), figsize=(3.3 * len(schemes), 3.3), squeeze=False)
    lo = float(np.nanmin(predictions[["observed", model]].to_numpy()))
    hi = float(np.nanmax(predictions[["observed", model]].to_numpy()))
    for ax, s in zip(axes[0], schemes):
        p = predictions[predictions["cv_scheme"] == s]
        m = regression_metrics(p["observed"], p[model])
        ax.scatter(p["observed"], p[model], s=10, alpha=0.7, color="tab:blue", edgecolor="none")
        ax.plot([lo, hi], [lo, hi], color="0.3", lw=0.8, ls="--")
        ax.set_xlabel(f"observed {label}")
        ax.set_ylabel(f"predicted {label} (out-of-fold)")
        ax.set_title(f"{s.replace('_', '-')} CV (pooled): R² {m['r2']:.2f}, RMSE {m['rmse']:.3g}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_shap_summary(shap_df: pd.DataFrame, X: pd.DataFrame, *, max_display: int = 12,
                      feature_labels: dict[str, str] | None = None):
    """SHAP beeswarm (one dot per sample and feature, coloured by the feature value).

    Parameters
    ----------
    shap_df : pandas.DataFrame
        SHAP values, samples x features (see :func:`shap_values`).
    X : pandas.DataFrame
        Feature values of the same samples.
    max_display : int, default 12
        Maximum number of features shown.
    feature_labels : dict, optional
        Reader's name per feature column (e.g. ``{"dist": "distance to the river"}``); columns not in
        it keep their name.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt
    import shap

    fig = plt.figure()
    names = [(feature_labels or {}).get(c, c) for c in shap_df.columns]
    shap.summary_plot(shap_df.to_numpy(), features=X[shap_df.columns], feature_names=names,
                      max_display=max_display, show=False, plot_size=(6.5, 0.35 * min(max_display, shap_df.shape[1])
                                                                          + 1.5))
    fig = plt.gcf()
    fig.axes[0].set_xlabel("SHAP value (contribution to the prediction, target units)")
    return fig


def plot_shap_bar(importance: pd.DataFrame):
    """Mean |SHAP| of the selected features (bars) with their gain share (text).

    Parameters
    ----------
    importance : pandas.DataFrame
        Importance table with feature, selected, mean_abs_shap, gain.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt

    d = importance[importance["selected"]].sort_values("mean_abs_shap")
    fig, ax = plt.subplots(figsize=(6.0, 0.32 * len(d) + 1.2))
    ax.barh(d["feature"], d["mean_abs_shap"], color="tab:red", alpha=0.8)
    for yv, (v, g) in enumerate(zip(d["mean_abs_shap"], d["gain"])):
        ax.text(v, yv, f"  gain {g:.2f}", va="center", fontsize=7)
    ax.set_xlabel("mean |SHAP value| (target units)")
    ax.margins(x=0.25)
    fig.tight_layout()
    return fig


def plot_dependence(shap_df: pd.DataFrame, X_raw: pd.DataFrame, features: list[str], *,
                    feature_labels: dict[str, str] | None = None):
    """SHAP dependence: SHAP value of each feature against its value (original units).

    Parameters
    ----------
    shap_df : pandas.DataFrame
        SHAP values, samples x features.
    X_raw : pandas.DataFrame
        Feature values in original units.
    features : list of str
        Features to plot (one panel each).
    feature_labels : dict, optional
        Reader's name per feature column for the x-axis labels; columns not in it keep their name.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt

    n = len(features)
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n + 0.4, 2.8), squeeze=False)
    for ax, f in zip(axes[0], features):
        xv = X_raw[f].to_numpy(float)
        if set(np.unique(xv[np.isfinite(xv)])) <= {0.0, 1.0}:
            xv = xv + np.random.default_rng(0).uniform(-0.08, 0.08, len(xv))  # jitter for 0/1 indicators
        ax.scatter(xv, shap_df[f], s=8, alpha=0.6, color="tab:purple", edgecolor="none")
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_xlabel((feature_labels or {}).get(f, f))
        ax.set_ylabel("SHAP value")
    fig.tight_layout()
    return fig


def plot_cv_comparison(metrics: pd.DataFrame):
    """RMSE and R2 per fold for each learner and CV scheme (points: folds; bar: mean).

    Parameters
    ----------
    metrics : pandas.DataFrame
        Per-fold metrics with columns model, cv_scheme, fold, r2, rmse.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(metrics["model"]))
    schemes = list(dict.fromkeys(metrics["cv_scheme"]))
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 3.0))
    width = 0.8 / len(schemes)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for ax, metric in zip(axes, ("rmse", "r2")):
        for j, s in enumerate(schemes):
            for i, m in enumerate(models):
                v = metrics[(metrics["model"] == m) & (metrics["cv_scheme"] == s)][metric].to_numpy()
                xpos = i + (j - (len(schemes) - 1) / 2) * width
                ax.bar(xpos, v.mean(), width=width * 0.9, color=colors[j % 4], alpha=0.35,
                       label=s.replace("_", "-") if i == 0 else None)
                ax.scatter(np.full(len(v), xpos), v, s=8, color=colors[j % 4])
        ax.set_xticks(range(len(models)), [MODEL_LABELS.get(m, m) for m in models], fontsize=8)
        ax.set_ylabel(metric.upper() if metric == "rmse" else "R²")
    axes[0].legend(fontsize=7, title="CV folds", title_fontsize=7)
    fig.tight_layout()
    return fig


def plot_grid_map(x, y, values, *, samples_xy: tuple | None = None, label: str = "", title: str = "",
                  cmap: str = "viridis", coordinate_unit: str = ""):
    """Map of values on regular grid cells (square markers sized to the cell spacing).

    Parameters
    ----------
    x, y : array-like
        Grid cell centre coordinates.
    values : array-like
        Value of each cell.
    samples_xy : tuple of (array-like, array-like) or None, optional
        Sample coordinates to overlay.
    label : str, default ''
        Colour bar label.
    title : str, default ''
        Axes title.
    cmap : str, default 'viridis'
        Matplotlib colour map.
    coordinate_unit : str, default ''
        Coordinate unit (axis labels).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt

    x = np.asarray(x, float)
    y = np.asarray(y, float)
    fig, ax = plt.subplots(figsize=(6.0, 4.6))
    dx = np.diff(np.unique(x))
    step = float(np.min(dx[dx > 0])) if np.any(dx > 0) else 1.0
    ext = max(np.ptp(x), np.ptp(y), step)
    size = (72 * 4.2 * step / ext) ** 2 * 1.1
    sc = ax.scatter(x, y, c=values, s=size, marker="s", cmap=cmap, linewidths=0)
    if samples_xy is not None:
        ax.scatter(samples_xy[0], samples_xy[1], s=6, facecolor="none", edgecolor="k", linewidths=0.5,
                   label="samples")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_aspect("equal")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.set_xlabel(f"x ({coordinate_unit})" if coordinate_unit else "x")
    ax.set_ylabel(f"y ({coordinate_unit})" if coordinate_unit else "y")
    if title:
        ax.set_title(title)
    fig.colorbar(sc, ax=ax, label=label, shrink=0.85)
    fig.tight_layout()
    return fig


# --- stage helpers -------------------------------------------------------------------------------
@dataclass
class DriverData:
    """The modelling table of the ``ml_drivers`` stage.

    Attributes
    ----------
    frame : DataFrame indexed by sample_id: the raw predictors (covariates, metal concentrations,
        x and y when the spatial term is wanted), complete rows only.
    y : Series of the target (log10 when ``log_target``), aligned with ``frame``.
    numeric, categorical : raw predictor names by kind.
    target_name : what is modelled (e.g. ``PERI``, ``Cd``), ``target_label`` with units/transform.
    medium : the medium modelled.
    notes : plain-language notes for the report (fallbacks, dropped rows, circularity).
    skip_reason : why the model cannot be fitted (None when it can).
    spatial : the columns of the spatial term (``['x', 'y']`` or empty); part of ``numeric`` but
        never candidate drivers.
    """

    frame: pd.DataFrame
    y: pd.Series
    numeric: list[str]
    categorical: list[str]
    target_name: str
    target_label: str
    medium: str
    notes: list[str] = field(default_factory=list)
    skip_reason: str | None = None
    spatial: list[str] = field(default_factory=list)

    @property
    def drivers(self) -> list[str]:
        """Candidate drivers: the predictors without the spatial term."""
        return [c for c in self.numeric + self.categorical if c not in self.spatial]


def assemble_dataset(data, *, target: str = "PERI", medium: str | None = None, predictors: list[str] | None = None,
                     spatial_term: bool = False, log_target: bool = False, fallback_metal: str | None = None,
                     indices: pd.DataFrame | None = None, min_samples: int = 30) -> DriverData:
    """Build the target and predictor table of one medium from a region's data and the indices table.

    ``target`` is read with :func:`parse_target`. When it names an index and the indices table
    is absent (or lacks that index), the concentration of ``fallback_metal`` (default: the first
    metal) is modelled instead and a note says so. Candidate drivers are the region's covariates
    (or ``predictors``: covariate names or metal symbols, whose concentrations are used);
    categorical ones are those listed under ``data.categorical``. Coordinates are never candidate
    drivers (they carry spatial autocorrelation, not mechanisms); with ``spatial_term`` they are
    added as a separate spatial term (``DriverData.spatial``). Rows with a missing target or
    predictor are dropped (noted).

    Parameters
    ----------
    data : the region's data (:class:`hmlib.io.RegionData`).
    target, medium, predictors, spatial_term, log_target, fallback_metal : the stage's options.
    indices : the indices stage's per-sample table (long: sample_id, medium, metal, index, value), or None.
    min_samples : fewest complete samples to fit the model.

    Returns
    -------
    DriverData
    """
    p = data.params
    medium = medium or data.media[0]
    if medium not in data.media:
        raise ValueError(f"stages.ml_drivers.medium {medium!r} is not a medium of the region {data.media}")
    unit = data.unit(medium)
    notes: list[str] = []
    wide = data.wide(medium)
    sites = data.sites(medium)
    t = parse_target(target, metals=data.metals)
    y = None
    if t["kind"] == "index":
        reason = None
        if indices is None:
            reason = "the pollution indices were not computed for this report"
        else:
            try:
                y = target_from_indices(indices, index=t["index"], metal=t["metal"], medium=medium)
                name = t["index"] if t["metal"] == "all" else f"{t['index']} of {t['metal']}"
                label = name
            except ValueError:
                what = t["index"] if t["metal"] == "all" else f"{t['index']} of {t['metal']}"
                reason = f"the pollution indices have no {what} values for {medium}"
        if y is None:
            fb = fallback_metal or data.metals[0]
            if fb not in data.metals:
                raise ValueError(f"stages.ml_drivers.fallback_metal: got {fb}; expected one of "
                                 f"{', '.join(data.metals)}")
            notes.append(f"**Fallback target.** The target {target} could not be used because {reason}; the model "
                         f"therefore explains the {fb} concentration in {medium} instead.")
            t = {"kind": "metal", "index": None, "metal": fb}
    if t["kind"] == "metal":
        y = wide[t["metal"]].rename(t["metal"])
        name, label = t["metal"], f"{t['metal']} ({unit})"
    y = y.reindex(sites.index)
    preds = list(predictors) if predictors else list(p.data.covariates)
    unknown = [c for c in preds if c not in sites.columns and c not in data.metals]
    if unknown:
        raise ValueError(f"stages.ml_drivers.predictors {unknown} are neither covariates "
                         f"{list(p.data.covariates)} nor metals {data.metals}")
    if t["kind"] == "metal" and t["metal"] in preds:
        raise ValueError(f"the target {t['metal']} cannot also be a predictor")
    metal_preds = [c for c in preds if c in data.metals and c not in sites.columns]
    if metal_preds and t["kind"] == "index":
        notes.append(f"The predictors include the concentrations of {', '.join(metal_preds)}, from which "
                     f"{name} itself is computed; their importance is partly by construction.")
    frame = pd.DataFrame(index=sites.index)
    for c in preds:
        frame[c] = sites[c] if c in sites.columns else wide[c].reindex(sites.index)
    categorical = [c for c in preds if c in p.data.categorical]
    numeric = [c for c in preds if c not in categorical]
    coords = [c for c in ("x", "y") if c in preds]
    if coords:
        raise ValueError(f"the coordinates {coords} cannot be candidate drivers; ask for the spatial term instead")
    spatial = []
    if spatial_term:
        frame["x"], frame["y"] = sites["x"], sites["y"]
        numeric += ["x", "y"]
        spatial = ["x", "y"]
    skip = None
    if not [c for c in numeric + categorical if c not in spatial]:
        skip = ("there are no candidate drivers: the region lists no sample covariates and the stage names no "
                "predictors (coordinates are not drivers)")
    if log_target:
        if (y <= 0).any():
            raise ValueError(f"log_target needs a positive target; {int((y <= 0).sum())} values of {name} are <= 0")
        y = np.log10(y)
        label = f"log10 {label}"
    ok = y.notna() & frame.notna().all(axis=1)
    if (~ok).any():
        notes.append(f"{int((~ok).sum())} of {len(ok)} {medium} samples lack the target or a predictor and are "
                     f"left out.")
    frame, y = frame[ok], y[ok]
    if skip is None and len(y) < min_samples:
        skip = f"only {len(y)} complete {medium} samples; the driver model needs at least {min_samples}"
    return DriverData(frame=frame, y=y.astype(float), numeric=numeric, categorical=categorical, target_name=name,
                      target_label=label, medium=medium, notes=notes, skip_reason=skip, spatial=spatial)


@dataclass
class DriverAnalysis:
    """Results of :func:`analyse_drivers`.

    Attributes
    ----------
    X : design matrix of the samples (raw units). levels : categorical levels.
    fit : the final :class:`DriverFit` on all samples.
    cv : :class:`CVResult` (random and spatial-block folds, with the training-mean baseline).
    folds : DataFrame sample_id, x, y, random fold, spatial_block fold, block.
    shap : SHAP values of the final XGBoost model (selected features).
    importance : :func:`importance_table` (exploratory when there is no skill).
    summary : :func:`summarize_cv`. comparison : :func:`compare_learners` text.
    skill : :func:`assess_skill` of XGBoost under spatial-block folds (the interpreted model).
    drivers : :func:`driver_table` (empty without transferable skill).
    spatial_share : :func:`spatial_share` (NaN without a spatial term).
    n_blocks : spatial blocks used.
    """

    X: pd.DataFrame
    levels: dict
    fit: DriverFit
    cv: CVResult
    folds: pd.DataFrame
    shap: pd.DataFrame
    importance: pd.DataFrame
    summary: pd.DataFrame
    comparison: str
    skill: Skill
    drivers: pd.DataFrame
    spatial_share: float
    n_blocks: int

    @property
    def map_allowed(self) -> bool:
        """A prediction map is a result only when the model transfers to held-out areas."""
        return self.skill.has_skill


def analyse_drivers(ds: DriverData, *, x, y, seed: int, n_folds: int = 5, n_spatial_blocks: int = 20,
                    **pipeline_kwargs) -> DriverAnalysis:
    """Fit the driver pipeline on all samples, cross-validate it (random and spatial-block folds), explain it.

    The inner tuning folds hold out whole spatial blocks, both inside the spatial-block CV and
    for the final model, so no hyperparameter is chosen for its interpolation between
    neighbours. Skill is judged on the spatial-block CV (:func:`assess_skill`); without it the
    driver table is empty.

    Parameters
    ----------
    ds : :func:`assemble_dataset`.
    x, y : sample coordinates (for the spatial blocks) aligned with ``ds.frame``.
    seed : seed of the folds and models.
    n_folds, n_spatial_blocks : outer folds and k-means blocks.
    pipeline_kwargs : passed to :func:`fit_driver_pipeline`.

    Returns
    -------
    DriverAnalysis
    """
    X, levels = encode_features(ds.frame, numeric=ds.numeric, categorical=ds.categorical)
    yv = ds.y.to_numpy(float)
    rf = random_folds(len(yv), n_folds=n_folds, seed=seed)
    sf, block = spatial_block_folds(x, y, n_folds=n_folds, n_blocks=n_spatial_blocks, seed=seed)
    spatial = tuple(ds.spatial)
    fit = fit_driver_pipeline(X, yv, seed=seed, groups=block, spatial=spatial, **pipeline_kwargs)
    cv = cross_validate(X, yv, {"random": rf, "spatial_block": sf}, seed=seed, groups={"spatial_block": block},
                        spatial=spatial, **pipeline_kwargs)
    sv = shap_values(fit.xgb, fit.transform(X))
    imp = importance_table(fit, sv)
    skill = assess_skill(cv.metrics, cv.predictions, model="xgb", cv_scheme="spatial_block")
    folds = pd.DataFrame({"sample_id": ds.frame.index, "x": np.asarray(x, float), "y": np.asarray(y, float),
                          "fold_random": rf + 1, "fold_spatial_block": sf + 1, "block": block + 1})
    return DriverAnalysis(X=X, levels=levels, fit=fit, cv=cv, folds=folds, shap=sv, importance=imp,
                          summary=summarize_cv(cv.metrics), comparison=compare_learners(cv.metrics), skill=skill,
                          drivers=driver_table(imp, skill), spatial_share=spatial_share(imp),
                          n_blocks=int(len(np.unique(block))))


def methods_text(ds: DriverData, *, n_folds: int, n_spatial_blocks: int, correlation_threshold: float,
                 selection: str, min_gain_share: float, top_k: int, n_search: int, feature_label=None) -> str:
    """Methods paragraph of the ``ml_drivers`` report section (validation first; formulas and citations).

    Parameters
    ----------
    ds : :func:`assemble_dataset`.
    n_folds, n_spatial_blocks, correlation_threshold, selection, min_gain_share, top_k, n_search :
        the stage's options.
    feature_label : callable, optional
        Reader's name of a candidate driver (default: the column name).

    Returns
    -------
    str (markdown)
    """
    sel = (f"features whose share of the total gain exceeds {min_gain_share:g} (at most {top_k})"
           if selection == "gain_share" else f"the {top_k} features with the largest gain share")
    preds = ", ".join(feature_label(d) if feature_label else str(d) for d in ds.drivers)
    spatial = ("The sample coordinates were not candidate drivers: they carry spatial autocorrelation, not "
               "mechanisms. They entered the model as a separate spatial term, outside pruning and selection, and "
               "their share of the model's mean absolute SHAP value is reported apart from the drivers."
               if ds.spatial else
               "The sample coordinates were not predictors: they carry spatial autocorrelation, not mechanisms, "
               "and the spatial structure is handled by the spatial-block validation.")
    return f"""
**Validation scheme.** Skill was estimated by {n_folds}-fold cross-validation with spatial-block folds: the
samples were grouped into {n_spatial_blocks} k-means clusters of their coordinates and whole clusters were held
out, so that test samples are not neighbours of training samples; random folds on spatially autocorrelated data
overstate predictive skill [@roberts2017cv]. Random folds are shown for comparison only. The whole pipeline
(standardisation, pruning, selection and hyperparameter search) was repeated inside every training fold, and the
inner folds of the hyperparameter search also held out whole clusters. A model is said to have transferable
skill when its mean spatial-block $R^2$ is above 0 and its mean RMSE is below that of predicting the mean of the
training samples; only then are its drivers interpreted.

**Model.** The target, {ds.target_label} in {ds.medium} (n = {len(ds.y)}), was modelled by extreme gradient
boosting (XGBoost) [@chen2016xgboost] following @wu2025tracing: an additive ensemble of $K$
regression trees, $\\hat y_i = \\sum_{{k=1}}^{{K}} f_k(\\mathbf x_i)$. Candidate drivers ({preds};
categorical ones one-hot encoded) were standardised, $x'_j = (x_j - \\mu_j)/\\sigma_j$. {spatial} Within
each cluster of candidates whose pairwise $|r|$ is at least {correlation_threshold:g} (complete-linkage
clustering on $1-|r|$), only the member with the largest absolute Spearman correlation with the target was
kept. A screening model ranked the remaining candidates by their share of the total gain,
$g_j = G_j / \\sum_k G_k$, and the final model used {sel}. Its hyperparameters were chosen by a reproducible
random search over {n_search} combinations of tree number, depth, learning rate, row subsampling and
minimum child weight (3-fold inner cross-validation, RMSE). Predictions were explained with SHAP values
from TreeExplainer [@lundberg2020tree], which split each prediction into additive contributions,
$\\hat y_i = \\phi_0 + \\sum_j \\phi_{{ij}}$. XGBoost was compared with a Random Forest [@breiman2001rf]
and an ordinary least-squares linear model on the same selected features and folds. Scores:
$R^2 = 1 - \\sum (y_i-\\hat y_i)^2 / \\sum (y_i-\\bar y)^2$,
$\\mathrm{{RMSE}} = \\sqrt{{\\tfrac1n \\sum (y_i-\\hat y_i)^2}}$,
$\\mathrm{{MAE}} = \\tfrac1n\\sum|y_i-\\hat y_i|$, computed per fold and reported as mean ± standard
deviation over folds.
"""


def cv_display(summary: pd.DataFrame, *, unit_label: str) -> pd.DataFrame:
    """Reader's table of :func:`summarize_cv`: learner, folds, R2, RMSE and MAE as mean ± sd.

    Parameters
    ----------
    summary : pandas.DataFrame
        Output of :func:`summarize_cv`.
    unit_label : str
        Target unit shown in the RMSE and MAE headers.

    Returns
    -------
    pandas.DataFrame
        Columns Learner, CV folds, R², RMSE (unit), MAE (unit), as formatted strings.
    """
    def pm(m, s):
        return [f"{a:.3g} ± {float(f'{b:.2g}'):g}" for a, b in zip(m, s)]

    return pd.DataFrame({
        "Learner": [MODEL_LABELS.get(m, m) for m in summary["model"]],
        "CV folds": [s.replace("_", "-") for s in summary["cv_scheme"]],
        "R²": pm(summary["r2_mean"], summary["r2_std"]),
        f"RMSE ({unit_label})": pm(summary["rmse_mean"], summary["rmse_std"]),
        f"MAE ({unit_label})": pm(summary["mae_mean"], summary["mae_std"]),
    })


def _direction(res: DriverAnalysis, f: str) -> str:
    xv = res.X[f].to_numpy(float)
    r = np.corrcoef(xv, res.shap[f].to_numpy(float))[0, 1] if np.ptp(xv) > 0 else np.nan
    d = "raises" if r > 0.3 else "lowers" if r < -0.3 else "has a mixed effect on"
    return f"membership {d}" if "=" in f else f"a higher value {d}"


def results_text(res: DriverAnalysis, ds: DriverData, *, refs: dict | None = None, label=None) -> str:
    """Results paragraphs: validation and skill first; drivers only when the model has transferable skill.

    The scores of every learner and fold design are in the cross-validation table; the text gives the
    verdict, what the gap between random and spatial-block folds means, and the drivers.

    Parameters
    ----------
    res : :func:`analyse_drivers`.
    ds : :func:`assemble_dataset`.
    refs : dict, optional
        Cross-references: ``cv`` (scores table), ``obs`` (observed vs predicted figure), ``drivers``
        (driver table), ``shap`` (beeswarm figure).
    label : callable, optional
        Reader's name of a feature (e.g. from the region's covariate labels); default
        :func:`readable_feature`.

    Returns
    -------
    str (markdown)
    """
    label = label or readable_feature
    refs = {k: v for k, v in (refs or {}).items() if v}
    at = {k: f"@{v}" for k, v in refs.items()}
    s = res.summary.set_index(["model", "cv_scheme"])
    xr = s.loc[("xgb", "random")]
    parts = [skill_statement(res.skill, target_label=ds.target_label, n_blocks=res.n_blocks,
                             refs="; ".join(at[k] for k in ("cv", "obs") if k in at))]
    if xr["r2_mean"] <= 0:
        gap = "neither fold design shows skill."
    elif xr["r2_mean"] - res.skill.r2_mean > 0.05:
        gap = ("the gap to the spatial-block score is the part of the apparent skill that comes from "
               "interpolating between neighbouring samples rather than from the predictors.")
    else:
        gap = "the two fold designs agree, so the skill does not rest on spatial proximity."
    sp = res.summary[res.summary["cv_scheme"] == "spatial_block"].set_index("model")["rmse_mean"]
    sp = sp.drop(index="mean", errors="ignore").sort_values()
    best = MODEL_LABELS.get(sp.index[0], sp.index[0]) if len(sp) else None
    comp = (f" Under spatial-block folds the {best} had the lowest error of the learners compared."
            if best and len(sp) > 1 and res.skill.has_skill else "")
    parts.append(f"With random folds, which let the model interpolate between neighbours, R² rose to "
                 f"{xr['r2_mean']:.2f}; {gap}{comp}")
    if np.isfinite(res.spatial_share):
        parts.append(f"The spatial term (the coordinates) accounts for {100 * res.spatial_share:.0f} % of the "
                     "model's mean absolute SHAP value; it describes where the target is high, not why, and is "
                     "not a driver.")
    if res.skill.has_skill:
        d = res.drivers
        pruned = res.fit.pruning[~res.fit.pruning["kept"]]["feature"].tolist()
        top = d.head(3)
        desc = [f"{label(f)} ({100 * sh:.0f} % of the drivers' mean absolute SHAP value; {_direction(res, f)} the "
                "prediction)" for f, sh in zip(top["feature"], top["share"])]
        where = "; ".join(at[k] for k in ("drivers", "shap") if k in at)
        parts.append(
            "**Drivers.** Of the candidate drivers, "
            + (f"{len(pruned)} {'was' if len(pruned) == 1 else 'were'} pruned as correlated with a more informative "
               f"one ({', '.join(label(f) for f in pruned)}); " if pruned else "none was pruned as correlated; ")
            + f"{len(d)} {'was' if len(d) == 1 else 'were'} selected. The most influential were " + "; ".join(desc)
            + (f" ({where})" if where else "")
            + ". Effects are associations learned from the samples, conditional on the other predictors, and carry "
            "only the model's limited skill; they are not causal estimates.")
    return "\n\n".join(parts)


def readable_feature(name: str) -> str:
    """A model feature as the reader knows it: a one-hot column ``Landuse=Pasture`` becomes ``Pasture (Landuse)``.

    Parameters
    ----------
    name : str
        Feature (design column) name.

    Returns
    -------
    str
    """
    if "=" in str(name):
        cov, level = str(name).split("=", 1)
        return f"{level} ({cov})"
    return str(name)


def exploratory_text(res: DriverAnalysis, ds: DriverData, *, label=None) -> str:
    """Appendix note for the SHAP ranking of a model without transferable skill (labelled exploratory).

    Parameters
    ----------
    res : :func:`analyse_drivers`.
    ds : :func:`assemble_dataset`.
    label : callable, optional
        Reader's name of a feature or covariate; default :func:`readable_feature`.

    Returns
    -------
    str (markdown)
    """
    imp = res.importance[res.importance["selected"] & ~res.importance["spatial"]]
    label = label or readable_feature
    names = ", ".join(label(f) for f in imp["feature"].head(5))
    cats = [c for c in ds.categorical]
    design = (f" The candidates are class variables only ({', '.join(label(c) for c in cats)}): a boosted-tree model can then add "
              "little to a comparison of the classes' means, and continuous covariates (terrain, distance to roads "
              "or sources, soil properties) would be needed to model the target within the classes."
              if cats and not [c for c in ds.numeric if c not in ds.spatial] else "")
    return (f"The SHAP ranking of this model is in the appendix, labelled exploratory: it shows which inputs the "
            f"model used to fit the sampled points ({names}), not what drives {ds.target_label}.{design}")


def compare_with_truth(importance: pd.DataFrame, truth: pd.DataFrame, *, source: dict[str, str] | None = None
                       ) -> pd.DataFrame:
    """Recovered importance of each covariate next to the generator's known truth.

    Parameters
    ----------
    importance : :func:`importance_table` (one-hot columns are summed to their covariate).
    truth : one row per covariate: ``covariate``, ``in_generator`` (bool: the generator uses it,
        directly or through a quantity it sets), ``pathway`` (text).
    source : design column -> covariate (``X.attrs['source']``); default: the column name, or
        the part before ``=`` for one-hot columns.

    Returns
    -------
    DataFrame covariate, in_generator, pathway, mean_abs_shap (0 when not selected), rank (1 =
    largest), recovered (True when a covariate the generator uses ranks above every covariate it
    does not use, or an unused covariate ranks below every used one).
    """
    need = {"covariate", "in_generator", "pathway"}
    if not need <= set(truth.columns):
        raise ValueError(f"truth table must have columns {sorted(need)}, got {list(truth.columns)}")
    imp = importance[~importance["spatial"]] if "spatial" in importance else importance
    src = source or {}
    cov = [src.get(f, f.split("=", 1)[0]) for f in imp["feature"]]
    agg = pd.Series(imp["mean_abs_shap"].fillna(0.0).to_numpy(), index=cov).groupby(level=0).sum()
    t = truth.copy()
    t["in_generator"] = t["in_generator"].astype(str).str.lower().isin(["true", "1", "yes"])
    t["mean_abs_shap"] = [float(agg.get(c, 0.0)) for c in t["covariate"]]
    t["rank"] = t["mean_abs_shap"].rank(ascending=False, method="min").astype(int)
    used = t.loc[t["in_generator"], "mean_abs_shap"]
    unused = t.loc[~t["in_generator"], "mean_abs_shap"]
    hi_unused = float(unused.max()) if len(unused) else -np.inf
    lo_used = float(used.min()) if len(used) else np.inf
    t["recovered"] = np.where(t["in_generator"], t["mean_abs_shap"] > hi_unused, t["mean_abs_shap"] < lo_used)
    return t[["covariate", "in_generator", "pathway", "mean_abs_shap", "rank", "recovered"]]


def truth_text(table: pd.DataFrame, *, has_skill: bool) -> str:
    """Plain-words comparison of :func:`compare_with_truth` (generated demo regions only).

    Parameters
    ----------
    table : :func:`compare_with_truth`.
    has_skill : whether the model has transferable skill.

    Returns
    -------
    str (markdown)
    """
    used = table[table["in_generator"]]
    unused = table[~table["in_generator"]]
    ok = int(table["recovered"].sum())
    return ("**Known truth.** These data are generated, so what the model should find is known. The generator "
            "makes the target depend on " + (", ".join(used["covariate"]) or "none of the covariates")
            + " and not on " + (", ".join(unused["covariate"]) or "any other covariate") + ". "
            + f"{ok} of {len(table)} covariates sit on the right side of that divide in the model's mean absolute "
            "SHAP ranking" + (" (" + "; ".join(f"{c}, unused by the generator, ranks {r} of {len(table)}"
                                               for c, r in zip(unused["covariate"], unused["rank"])) + ")"
                              if len(unused) else "")
            + "."
            + (" A covariate the generator does not use can still rank high when it varies across the region in step "
               "with the target (a trend, a shared pattern): SHAP rankings are associations, not mechanisms."
               if len(unused) and not unused["recovered"].all() else "")
            + ("" if has_skill else " The model has no transferable skill, so this comparison is exploratory."))


def plot_folds(folds: pd.DataFrame, *, coordinate_unit: str = ""):
    """Sample locations coloured by random fold (left) and spatial-block fold (right).

    Parameters
    ----------
    folds : pandas.DataFrame
        Columns x, y, fold_random, fold_spatial_block.
    coordinate_unit : str, default ''
        Coordinate unit (axis labels).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7.0, 3.3), sharex=True, sharey=True)
    for ax, col, title in ((axes[0], "fold_random", "random folds"), (axes[1], "fold_spatial_block",
                                                                       "spatial-block folds")):
        ax.scatter(folds["x"], folds["y"], c=folds[col], cmap="tab10", s=10, vmin=1, vmax=10)
        ax.set_title(title)
        ax.set_aspect("equal")
        ax.set_xlabel(f"x ({coordinate_unit})" if coordinate_unit else "x")
    axes[0].set_ylabel(f"y ({coordinate_unit})" if coordinate_unit else "y")
    fig.tight_layout()
    return fig
