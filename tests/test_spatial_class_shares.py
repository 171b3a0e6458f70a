"""The map's class shares around a place (hmlib.spatial.class_shares, share_radius, map_class_shares) and their
use by regression kriging and the random forest in map_metal (sample_shares, grid_shares)."""
import numpy as np
import pandas as pd
import pytest

from hmlib import spatial as sp


def _halves(n: int = 10):
    """A 10 x 10 grid of unit spacing: class a where x < 5, b elsewhere."""
    gx, gy = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float))
    gx, gy = gx.ravel(), gy.ravel()
    return gx, gy, pd.Series(np.where(gx < 5, "a", "b"))


def test_class_shares_count_the_cells_within_the_radius():
    """Checked against cells counted by hand: around (4.4, 5) the cells within 1.1 are (4, 5), (4, 4), (4, 6) of
    class a and (5, 5) of class b, so the shares are 3/4 and 1/4; at radius 0 the nearest cell (4, 5) gives a
    share of 1 to a; a cell without a class is not counted, and one of a class not listed counts in the
    denominator only."""
    gx, gy, cls = _halves()
    p = sp.class_shares([4.4], [5.0], grid_x=gx, grid_y=gy, grid_classes=cls, levels=["a", "b"], radius=1.1)
    assert p.tolist() == [[0.75, 0.25]]
    p0 = sp.class_shares([4.4], [5.0], grid_x=gx, grid_y=gy, grid_classes=cls, levels=["a", "b"], radius=0.0)
    assert p0.tolist() == [[1.0, 0.0]]
    gaps = cls.copy()
    gaps[(gx == 4) & (gy == 4)] = np.nan                    # no class: left out, 2 a of 3 cells
    gaps[(gx == 4) & (gy == 6)] = "c"                       # another class: 1 a, 1 c, 1 b
    p = sp.class_shares([4.4], [5.0], grid_x=gx, grid_y=gy, grid_classes=gaps, levels=["a", "b"], radius=1.1)
    assert p.tolist() == [pytest.approx([1 / 3, 1 / 3])]


def test_share_radius_scores_the_shares_by_the_brier_score():
    """Checked against Brier scores worked by hand: a sample at (4.4, 5) recorded as b has, at radius 0, shares
    (1, 0) and a score of 1 + 1 = 2; at radius 1.1, shares (3/4, 1/4) and a score of 9/16 + 9/16 = 1.125; a sample
    at (1, 1) recorded as a scores 0 at both. The mean over the two is the score, and the smaller one is chosen."""
    gx, gy, cls = _halves()
    tab = sp.share_radius([4.4, 1.0], [5.0, 1.0], recorded=pd.Series(["b", "a"]), grid_x=gx, grid_y=gy,
                          grid_classes=cls, radii=(0.0, 1.1))
    assert tab["brier"].tolist() == pytest.approx([1.0, 0.5625])
    assert tab["radius"].tolist() == pytest.approx([0.0, 1.1])          # spacing 1: radii in grid spacings
    assert tab["chosen"].tolist() == [False, True]


def _wiggly_survey(seed: int, n: int, exact_map: bool):
    """Seeded generator with a known truth: on a 40 x 40 grid of unit spacing the true boundary between rock A and
    rock B is x = 20 + 3 sin(y / 3); values are 10 plus 6 on rock B plus noise of standard deviation 0.3, without
    spatial structure. The map draws the boundary straight at x = 20 (or, with ``exact_map``, the true one)."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(40, dtype=float), np.arange(40, dtype=float))
    gx, gy = gx.ravel(), gy.ravel()

    def truth(x, y):
        return np.where(x < 20 + 3 * np.sin(y / 3), "A", "B")

    grid_rock = truth(gx, gy) if exact_map else np.where(gx < 20, "A", "B")
    x, y = rng.uniform(0, 39, n), rng.uniform(0, 39, n)
    rock = truth(x, y)
    v = 10 + 6 * (rock == "B") + rng.normal(0, 0.3, n)
    return x, y, rock, v, gx, gy, pd.DataFrame({"rock": grid_rock})


def _rk_map(x, y, rock, v, gx, gy, grid, *, shares: bool, n_fit: int):
    """Regression kriging fitted on the first n_fit samples and predicted at the others, read at their nearest grid
    cell's class (or the map's shares there), as an evaluation reads a map."""
    t, h = np.arange(n_fit), np.arange(n_fit, len(v))
    rec = pd.DataFrame({"rock": rock})
    mapped = sp.covariates_at_samples(x, y, sample_covariates=rec, grid_x=gx, grid_y=gy, grid_covariates=grid)
    kw = dict(x=x[t], y=y[t], values=v[t], grid_x=x[h], grid_y=y[h], sample_covariates=rec.iloc[t],
              sample_map_covariates=mapped.iloc[t], grid_covariates=mapped.iloc[h].reset_index(drop=True),
              categorical=["rock"], methods=("ok", "rk"), log_mode="never", anisotropy="none", block_cv=False,
              collocated_check=False, seed=4)
    cal = pd.DataFrame()
    if shares:
        ss, sh, cal = sp.map_class_shares(x[t], y[t], recorded=rec.iloc[t], grid_x=gx, grid_y=gy,
                                          grid_covariates=grid, categorical=["rock"], at=(x[h], y[h]))
        kw.update(sample_shares=ss, grid_shares=sh)
    mm = sp.map_metal("Cd", **kw)
    assert mm.best in ("ok", "rk")
    cv = mm.cv_summary.set_index("method")[["mae", "rmse"]]
    if shares:
        assert set(mm.form_cv["form"]) == {"classes", "shares"}
        assert mm.covariate_forms["rk"] == mm.form_cv.loc[mm.form_cv["mae"].idxmin(), "form"]
        assert mm.covariate_forms["rk"] == "shares"
    return cv, cal


def test_shares_recover_what_a_misplaced_boundary_costs_regression_kriging():
    """Checked against the known truth of a seeded generator (a class effect of 6 across a wavy boundary that the
    map draws straight): the Brier score picks a radius of more than the nearest cell, and regression kriging fitted
    and scored on the map's shares (the form its cross-validation chooses) has a cross-validated root mean squared error well below (by a quarter or more)
    that of the one fitted on the recorded classes and scored with the map's classes. Where the class is uncertain
    the shares give the mixture's mean, which minimises the squared error, so the check is on the RMSE. A map that
    draws the true boundary needs at most one grid spacing (the cells' own discretisation of the boundary), less
    than the straight one."""
    x, y, rock, v, gx, gy, grid = _wiggly_survey(7, 400, exact_map=False)
    hard, _ = _rk_map(x, y, rock, v, gx, gy, grid, shares=False, n_fit=300)
    soft, cal = _rk_map(x, y, rock, v, gx, gy, grid, shares=True, n_fit=300)
    assert float(cal.loc[cal["chosen"], "spacings"].iloc[0]) > 0
    assert soft.loc["rk", "rmse"] < 0.75 * hard.loc["rk", "rmse"]
    x, y, rock, v, gx, gy, grid = _wiggly_survey(7, 400, exact_map=True)
    _, cal_exact = sp.map_class_shares(x, y, recorded=pd.DataFrame({"rock": rock}), grid_x=gx, grid_y=gy,
                                       grid_covariates=grid, categorical=["rock"])[1:]
    chosen = float(cal_exact.loc[cal_exact["chosen"], "spacings"].iloc[0])
    assert chosen <= 1.0 < float(cal.loc[cal["chosen"], "spacings"].iloc[0])


def test_share_sentence_names_radii_and_scores_as_readers_know_them():
    """Checked against hand-written sentences: the radius and Brier score of each covariate against the nearest
    cell's, in the reader's names; a covariate whose nearest cell did best is named as such; the metals and methods
    that use the shares; nothing without shares."""
    cal = pd.DataFrame({"covariate": ["Landuse", "Landuse", "soil", "soil"], "spacings": [0.0, 1.5, 0.0, 1.0],
                        "radius": [0.0, 0.075, 0.0, 0.05], "brier": [0.239, 0.180, 0.0, 0.003],
                        "agreement": [0.88, 0.89, 1.0, 0.99], "chosen": [False, True, True, False]})
    forms = pd.DataFrame({"metal": ["Cd", "Cd", "Cd", "Cd", "Pb", "Pb"], "method": ["rk", "rk", "rfk", "rfk", "rfk", "rfk"],
                          "form": ["classes", "shares"] * 3, "mae": [1.0, 0.9, 1.0, 1.1, 2.0, 1.9],
                          "chosen": [False, True, True, False, False, True]})
    txt = sp.class_share_text(cal, forms=forms, labels={"Landuse": "land use", "soil": "soil type"},
                              coordinate_unit="km")
    assert ("with the map's classes replaced by the share of each land use class within 0.075 km and the soil type of "
            "the nearest cell around each sample and grid cell") in txt
    assert "The shares were used by the random forest for Pb and by regression kriging for Cd, the classes elsewhere." in txt
    assert "(Brier score 0.18 for land use, against 0.24 with the nearest cell's class)" in txt
    assert sp.class_share_text(pd.DataFrame()) == ""
