"""Cokriging with a smooth (Gaussian) basic structure stays well conditioned."""
from pathlib import Path

import numpy as np
import pandas as pd

from hmlib import spatial as sp

JURA = Path(__file__).resolve().parents[1] / "data" / "jura" / "jura_samples.csv"


def test_gaussian_lmc_cokriging_predicts_held_out_jura_samples_as_well_as_kriging():
    """Checked against measured values: 159 Jura samples fit Cr cokriged with Ni and Zn (Gaussian basic structure
    chosen by the variogram fit), the other 100 samples are predicted. Without a nugget floor the nearly
    nugget-free Ni structure made the system ill-conditioned (Posa 1989) and predictions ran from -244 to
    165 mg/kg (MAE 24.9 against ordinary kriging's 5.9). Now every prediction lies within the measured range
    and the MAE at the held-out samples is within 5 % of ordinary kriging's."""
    d = pd.read_csv(JURA)
    idx = np.random.default_rng(101).permutation(len(d))
    fit, val = d.iloc[idx[:159]].reset_index(drop=True), d.iloc[idx[159:]].reset_index(drop=True)
    others = ["Cd", "Co", "Cu", "Ni", "Pb", "Zn"]
    kw = dict(x=fit["Xloc"], y=fit["Yloc"], values=fit["Cr"], log=False, seed=12, anisotropy="none")
    ck = sp.fit_spatial_model("ck", secondary=fit[others], **kw)
    assert ck.variogram.model == "gaussian" and ck.lmc.names[1:] == ["Zn", "Ni"]
    ok = sp.fit_spatial_model("ok", **kw)
    obs = val["Cr"].to_numpy(float)
    p_ck = ck.predict(val["Xloc"], val["Yloc"])["prediction"].to_numpy()
    p_ok = ok.predict(val["Xloc"], val["Yloc"])["prediction"].to_numpy()
    assert p_ck.min() >= d["Cr"].min() and p_ck.max() <= d["Cr"].max()
    assert np.mean(np.abs(p_ck - obs)) <= 1.05 * np.mean(np.abs(p_ok - obs))


def test_nugget_floor_applies_to_gaussian_structures_only():
    """Checked against the definition: the diagonal of the nugget matrix is raised to 5 % of each variable's
    sill for a Gaussian basic structure (off-diagonal terms kept, so the matrix stays positive semi-definite),
    and an exponential structure's fit is left as Goulard and Voltz's algorithm gives it."""
    import gstools as gs

    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 10, (300, 2))
    f = gs.SRF(gs.Gaussian(dim=2, var=1.0, len_scale=2.0), seed=4)((xy[:, 0], xy[:, 1]))
    z = np.column_stack([f + rng.normal(0, 0.3, 300), f])          # secondary without nugget
    ev = sp.cross_variograms(xy[:, 0], xy[:, 1], z, bin_edges=np.linspace(0, 5, 11))
    for model, floor in ((gs.Gaussian(dim=2, len_scale=2.0), True), (gs.Exponential(dim=2, len_scale=2.0), False)):
        raw = sp.fit_coregionalisation(ev, basic=model, names=["a", "b"], min_nugget_share=0.0)
        lmc = sp.fit_coregionalisation(ev, basic=model, names=["a", "b"])
        sill = np.diag(raw.b0 + raw.b1)
        want = np.maximum(np.diag(raw.b0), 0.05 * sill) if floor else np.diag(raw.b0)
        np.testing.assert_allclose(np.diag(lmc.b0), want, rtol=1e-12)
        np.testing.assert_allclose(lmc.b0[0, 1], raw.b0[0, 1], rtol=1e-12)
        assert np.linalg.eigvalsh(lmc.b0).min() >= -1e-12
