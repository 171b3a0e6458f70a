"""The stacked ensemble's place in the choice of the mapped method (hmlib.spatial.select_method)."""
import numpy as np
import pandas as pd

from hmlib import spatial as sp


def _losses(seed: int, *, stack_k: float, stack_b: float, noise: float = 0.6, n: int = 200):
    rng = np.random.default_rng(seed)
    ok_k, ok_b = rng.uniform(1, 2, n), rng.uniform(1, 2, n)
    k = pd.DataFrame({"ok": ok_k, "rfk": ok_k + rng.normal(0, noise, n), "stack": stack_k * ok_k + rng.normal(0, noise, n)})
    b = pd.DataFrame({"ok": ok_b, "rfk": ok_b + rng.normal(0, noise, n), "stack": stack_b * ok_b + rng.normal(0, noise, n)})
    # centre the noise so that the stack's mean ratio to OK is exactly the one asked for
    for S, f in ((k, stack_k), (b, stack_b)):
        S["stack"] += f * S["ok"].mean() - S["stack"].mean()
    return k, b


def test_ensemble_no_worse_than_ok_in_every_scheme_is_mapped_without_a_margin():
    """Checked against the rule's definition on hand-built losses: a stack 2 % better than OK in both schemes with
    paired-difference noise far above 2 % (so no single method could pass the one-standard-error margin) is chosen;
    the same stack 1 % worse than OK under the block scheme is not, and OK stays; without ``ensemble`` the noisy
    stack never replaces OK."""
    k, b = _losses(1, stack_k=0.98, stack_b=0.98)
    d = b["stack"] - b["ok"]
    assert d.mean() + d.std(ddof=1) / np.sqrt(len(d)) > 0          # within the noise: no clear gain
    avg = (k + b) / 2
    sel = sp.select_method(avg, scheme_losses={"kfold": k, "block": b}, ensemble="stack")
    assert sel["chosen"] == "stack" and sel["rule"] == "ensemble" and "stack" in sel["eligible"]
    assert sp.select_method(avg, scheme_losses={"kfold": k, "block": b})["chosen"] == "ok"

    k, b = _losses(1, stack_k=0.98, stack_b=1.01)
    sel = sp.select_method((k + b) / 2, scheme_losses={"kfold": k, "block": b}, ensemble="stack")
    assert sel["chosen"] == "ok" and sel["rule"] == "one_se" and "stack" not in sel["eligible"]


def _cv(pred, obs, folds):
    """A cross_validate-like table on the raw scale (prediction = modelling-scale mean)."""
    return pd.DataFrame({"index": np.arange(len(obs)), "fold": folds, "observed": obs, "predicted": pred,
                         "median": pred, "variance": 1.0, "observed_t": obs, "mean_t": pred, "sd_t": 1.0,
                         "psi": 0.0})


def test_stack_weights_shrink_a_known_mixture_towards_the_reference():
    """Checked against the generator's known truth: the observed values are exactly 0.3 x member A + 0.7 x member B,
    so the unshrunk weights are (0.3, 0.7); shrunk by 0.5 towards A they must be 0.5 x (0.3, 0.7) + 0.5 x (1, 0) =
    (0.65, 0.35), and shrunk by 1 they are A alone. A shrinkage outside [0, 1] or without a reference is refused."""
    rng = np.random.default_rng(3)
    P = rng.normal(10, 2, (300, 2))
    y = 0.3 * P[:, 0] + 0.7 * P[:, 1]
    assert np.allclose(sp.stack_weights(P, y), [0.3, 0.7], atol=1e-6)
    assert np.allclose(sp.stack_weights(P, y, shrink=0.5, reference=0), [0.65, 0.35], atol=1e-6)
    assert np.allclose(sp.stack_weights(P, y, shrink=1.0, reference=0), [1.0, 0.0])
    for bad in ({"shrink": 1.5, "reference": 0}, {"shrink": 0.5}):
        try:
            sp.stack_weights(P, y, **bad)
        except ValueError:
            continue
        raise AssertionError(f"expected a ValueError for {bad}")


def test_stack_shrinkage_follows_the_known_quality_of_the_members():
    """Checked against a seeded generator's known truth. Truth y; ordinary kriging predicts y + N(0, 1) and a second
    method y + N(0, 0.2): the second is the better by construction, so no shrinkage towards OK (0) is chosen and the
    stacked out-of-fold error is well below OK's in both schemes. When the second method is a copy of OK, every
    shrinkage gives the same error and the tie goes to OK itself (1). When its error is OK's error times six plus 10,
    any weight on it adds error (the derivative of the squared error at weight 0 is positive), so the ensemble is
    OK itself and OK is mapped by the mean-ratio rule."""
    rng = np.random.default_rng(11)
    n = 400
    y = rng.normal(50, 5, n)
    ok = y + rng.normal(0, 1.0, n)
    schemes = {"kfold": sp.random_folds(n, n_folds=10, seed=1), "block": np.arange(n) % 5}

    def by_scheme(other):
        return {s: {"ok": _cv(ok, y, f), "rfk": _cv(other, y, f)} for s, f in schemes.items()}

    good = y + rng.normal(0, 0.2, n)
    lam, tab = sp.stack_shrinkage(by_scheme(good), members=["ok", "rfk"], log=False)
    assert lam == 0.0
    assert set(tab["shrink"]) == set(sp.STACK_SHRINKAGE) and set(tab["scheme"]) == {"kfold", "block"}
    assert (tab.loc[tab["shrink"] == 0.0, "ratio_mae_to_reference"] < 0.5).all()
    assert (tab.loc[tab["shrink"] == 1.0, "ratio_mae_to_reference"] == 1.0).all()
    assert sp.stack_shrinkage(by_scheme(ok.copy()), members=["ok", "rfk"], log=False)[0] == 1.0

    noise = y + 6 * (ok - y) + 10
    b = by_scheme(noise)
    lam, _ = sp.stack_shrinkage(b, members=["ok", "rfk"], log=False)
    assert lam == 1.0
    losses = {}
    for s, d in b.items():
        st, _ = sp.stacked_cv(d, log=False, shrink=lam)
        losses[s] = pd.DataFrame({"ok": np.abs(ok - y), "rfk": np.abs(noise - y), "stack": np.abs(st["predicted"] - y)})
    sel = sp.select_method((losses["kfold"] + losses["block"]) / 2, scheme_losses=losses, ensemble="stack",
                           ensemble_rule="mean_ratio")
    assert sel["chosen"] == "ok"


def test_mean_ratio_rule_maps_an_ensemble_better_on_average_over_the_schemes():
    """Checked against the rule's definition on hand-built losses: a stack 2 % better than OK under k-fold and 1 %
    worse under blocks (mean ratio 0.995) is mapped by the mean-ratio rule but not by the every-scheme rule; a stack
    1 % worse on average is mapped by neither."""
    k, b = _losses(1, stack_k=0.98, stack_b=1.01)
    avg = (k + b) / 2
    sch = {"kfold": k, "block": b}
    sel = sp.select_method(avg, scheme_losses=sch, ensemble="stack", ensemble_rule="mean_ratio")
    assert sel["chosen"] == "stack" and sel["rule"] == "ensemble"
    assert sp.select_method(avg, scheme_losses=sch, ensemble="stack")["chosen"] == "ok"
    k, b = _losses(1, stack_k=1.0, stack_b=1.02)
    assert sp.select_method((k + b) / 2, scheme_losses={"kfold": k, "block": b}, ensemble="stack",
                            ensemble_rule="mean_ratio")["chosen"] == "ok"
