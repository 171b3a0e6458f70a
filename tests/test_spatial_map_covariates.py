"""Cross-validation that scores the map as it is used: held-out samples predicted from the covariates the grid
has at them (hmlib.spatial.covariates_at_samples, cross_validate's predict_covariates, map_metal's
sample_map_covariates)."""
import numpy as np
import pandas as pd
import pytest

from hmlib import spatial as sp


def _grid(n: int = 10, spacing: float = 1.0):
    gx, gy = np.meshgrid(np.arange(n) * spacing, np.arange(n) * spacing)
    gx, gy = gx.ravel(), gy.ravel()
    return gx, gy, pd.DataFrame({"rock": np.where(gx < n * spacing / 2, "A", "B"), "dist": gx * 10.0})


def _class_survey(seed: int, n: int):
    """Samples without spatial structure: 10 plus 6 in class B plus noise of standard deviation 0.3."""
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, 10, n), rng.uniform(0, 10, n)
    cls = np.where(rng.random(n) < 0.5, "A", "B")
    return rng, x, y, cls, 10 + 6 * (cls == "B") + rng.normal(0, 0.3, n)


def test_covariates_at_samples_takes_the_nearest_cell_and_keeps_the_record_outside_the_grid():
    """Checked against hand-set positions: a sample 0.2 cell from the cell (7, 3) takes that cell's class and
    value; a sample 5 cells beyond the grid's edge keeps what was recorded; a sample whose nearest cell lacks a
    value keeps its own for that covariate only."""
    gx, gy, gc = _grid()
    gc.loc[(gx == 2) & (gy == 2), "dist"] = np.nan
    x, y = np.array([7.2, 15.0, 2.1]), np.array([3.0, 3.0, 2.0])
    rec = pd.DataFrame({"rock": ["A", "A", "B"], "dist": [1.0, 2.0, 3.0]})
    out = sp.covariates_at_samples(x, y, sample_covariates=rec, grid_x=gx, grid_y=gy, grid_covariates=gc)
    assert out["rock"].tolist() == ["B", "A", "A"]
    assert out["dist"].tolist() == [70.0, 2.0, 3.0]
    assert rec["rock"].tolist() == ["A", "A", "B"]                          # the input is not changed
    agree = sp.covariate_agreement(rec, out, categorical=["rock"]).set_index("covariate")
    assert agree.loc["rock", "agreement"] == pytest.approx(1 / 3)
    assert agree.loc["rock", "kind"] == "class" and agree.loc["dist", "kind"] == "value"


def test_cross_validation_with_the_maps_covariates_shows_the_error_of_a_wrong_class():
    """Checked against a seeded generator whose truth is known: values are 10 plus 6 in class B plus noise of
    standard deviation 0.3, without spatial structure. Regression kriging predicts a held-out sample to about the
    noise from its recorded class; when the map gives the wrong class at a fifth of the samples, cross-validation
    with the map's covariates shows an absolute error of about 6 there (the class effect), and the same error as
    before at the others."""
    n = 200
    rng, x, y, cls, v = _class_survey(3, n)
    rec = pd.DataFrame({"rock": cls})
    wrong = rng.random(n) < 0.2
    mapped = pd.DataFrame({"rock": np.where(wrong, np.where(cls == "A", "B", "A"), cls)})
    kw = dict(x=x, y=y, values=v, covariates=rec, categorical=["rock"], n_folds=5, seed=1)
    own = sp.cross_validate("rk", **kw)
    as_map = sp.cross_validate("rk", predict_covariates=mapped, **kw)
    e_own = np.abs(own["observed"] - own["predicted"]).to_numpy()
    e_map = np.abs(as_map["observed"] - as_map["predicted"]).to_numpy()
    assert e_own.mean() < 0.4
    assert np.mean(e_map[wrong]) == pytest.approx(6.0, abs=0.5)
    assert np.allclose(e_map[~wrong], e_own[~wrong])


def test_map_metal_scores_covariate_methods_with_the_maps_covariates():
    """Checked against the known truth of a seeded generator: with a strong class effect and a class map that is
    right everywhere, scoring with the map's covariates gives the same cross-validation as scoring with the
    records; with a map wrong at a third of the samples, regression kriging's k-fold MAE rises by about the
    class effect times the share that is wrong (6 x 1/3 = 2), while ordinary kriging's does not change."""
    n = 150
    _, x, y, cls, v = _class_survey(5, n)
    rec = pd.DataFrame({"rock": cls})
    wrong = np.arange(n) % 3 == 0
    mapped = pd.DataFrame({"rock": np.where(wrong, np.where(cls == "A", "B", "A"), cls)})
    gx, gy = np.array([5.0]), np.array([5.0])
    kw = dict(x=x, y=y, values=v, grid_x=gx, grid_y=gy, sample_covariates=rec,
              grid_covariates=pd.DataFrame({"rock": ["A"]}), categorical=["rock"], methods=("ok", "rk"),
              log_mode="never", anisotropy="none", block_cv=False, collocated_check=False, seed=2)
    same = sp.map_metal("Cd", sample_map_covariates=rec, **kw).cv_summary.set_index("method")["mae"]
    base = sp.map_metal("Cd", **kw).cv_summary.set_index("method")["mae"]
    off = sp.map_metal("Cd", sample_map_covariates=mapped, **kw).cv_summary.set_index("method")["mae"]
    assert same["rk"] == pytest.approx(base["rk"]) and same["ok"] == pytest.approx(base["ok"])
    assert off["ok"] == pytest.approx(base["ok"])
    assert off["rk"] - base["rk"] == pytest.approx(2.0, abs=0.4)


def test_agreement_sentence_names_each_covariate_as_readers_know_it():
    """Checked against hand-written sentences: classes as a share of the samples, numeric covariates by their
    correlation, in the reader's names; nothing without the comparison."""
    agree = pd.DataFrame({"covariate": ["Rock", "Landuse", "dist"], "kind": ["class", "class", "value"],
                          "n": [259, 259, 259], "agreement": [0.853, 0.88, 0.9999]})
    txt = sp.covariate_agreement_text(agree, labels={"Rock": "rock type", "Landuse": "land use",
                                                     "dist": "distance to the river"})
    assert "The map's rock type is the one recorded at 85 % of the samples and its land use at 88 %." in txt
    assert "The map's numeric covariates follow the recorded values: distance to the river (correlation 1.00)." in txt
    assert "nearest grid cell" in txt
    assert sp.covariate_agreement_text(pd.DataFrame()) == ""
