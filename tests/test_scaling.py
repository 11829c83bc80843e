"""The AMPS scaling: β = 0 is Learn-to-Steer, bounded factors of mean 1, units, the sign test, the choice, the config."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats  # noqa: F401  (imported here: amps.statistics imports it lazily, at over half a second)
import torch
import yaml

from amps import statistics
from amps.core.config import ConfigError, validate_config
from amps.mcr.table import mcr_column
from amps.method import scaling
from amps.method.curves import CurveSettings

from conftest import REPO


def _beta_mcr(seed: int = 0, records: int = 200) -> np.ndarray:
    """A realistic MCR sample: skewed, within (0, 1) (sd ~0.145, quartiles ~0.18, 0.28, 0.37 for seed 0)."""
    return np.random.default_rng(seed).beta(2, 5, records)


def _vectors(records: int, hidden: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(records, hidden, generator=torch.Generator().manual_seed(seed))


# --- β = 0 is Learn-to-Steer ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda mcr: scaling.from_units(mcr, 0.0, 0.75, 3.0),
        lambda mcr: scaling.from_units(np.full(6, 0.5), 2.0, 0.75, 3.0),  # no spread: γ cannot tell records apart
        # All equal too, but the float sd of six 0.4 is 6e-17, not 0: still no spread, β must be 0 (not 3e16).
        lambda mcr: scaling.from_units(np.full(6, 0.4), 2.0, 0.75, 3.0),
        lambda mcr: scaling.from_values(mcr, 0.0, 0.3, 3.0),
    ],
    ids=["zero-units", "zero-spread", "zero-spread-rounded", "zero-beta-value"],
)
def test_beta_zero_gives_factor_one_and_the_learn_to_steer_target_exactly(make):
    mcr = _beta_mcr(records=20)
    choice = make(mcr)
    assert (choice.beta, choice.normaliser, choice.name) == (0.0, 1.0, "b0")
    probe = np.concatenate([mcr, [0.0, 1.0, np.nan]])
    assert np.array_equal(choice.factors(probe), np.ones(len(probe)))
    vectors = _vectors(len(probe))
    assert torch.equal(choice.targets(vectors, probe), vectors)


# --- bounded factors of mean 1 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "quantile", "max_factor"),
    [(-2.0, 0.5, 3.0), (-1.0, 0.75, 1.5), (-0.5, 0.25, 3.0), (0.5, 0.5, 1.5), (1.0, 0.25, 3.0), (2.0, 0.75, 3.0)],
)
def test_factors_are_bounded_have_mean_one_on_steering_train_and_follow_the_sign_of_beta(units, quantile, max_factor):
    train = _beta_mcr()
    choice = scaling.from_units(train, units, quantile, max_factor)
    assert choice.beta == pytest.approx(units / train.std(ddof=1), rel=1e-12)
    assert choice.r_anchor == pytest.approx(np.quantile(train, quantile), rel=1e-12)
    factors = choice.factors(train)
    # The formula c = min(κ·max(0, 1 + β(MCR − r)), max_factor) with the reported κ.
    expected = np.minimum(choice.normaliser * np.maximum(0.0, 1 + choice.beta * (train - choice.r_anchor)), max_factor)
    np.testing.assert_allclose(factors, expected, rtol=0, atol=1e-12)
    assert factors.min() >= 0.0 and factors.max() <= max_factor
    assert abs(factors.mean() - 1.0) < 1e-9
    assert factors.std() > 0.1  # the scaling does redistribute strength
    ordered = factors[np.argsort(train, kind="stable")]
    steps = np.diff(ordered)
    if units > 0:  # higher MCR -> larger factor (ties at 0 and at the bound allowed)
        assert steps.min() >= -1e-12 and ordered[-1] > ordered[0]
    else:
        assert steps.max() <= 1e-12 and ordered[-1] < ordered[0]


def test_the_normaliser_holds_for_training_mcr_with_nan_and_other_records_use_the_same_factor_function():
    train = np.concatenate([_beta_mcr(records=50), [np.nan, np.nan]])
    choice = scaling.from_units(train, 1.0, 0.5, 3.0)
    factors = choice.factors(train)
    assert factors[-2:].tolist() == [1.0, 1.0]  # a NaN MCR gets the mean factor 1
    assert abs(factors[:-2].mean() - 1.0) < 1e-9  # the mean over the finite training MCR is 1
    assert choice.beta == pytest.approx(1.0 / np.nanstd(train, ddof=1))
    # A test record's factor depends only on its own MCR.
    probe = np.array([train[3], np.nan, train[7]])
    np.testing.assert_array_equal(choice.factors(probe), [factors[3], 1.0, factors[7]])


def test_targets_are_factor_times_vector_and_refuse_mismatched_shapes():
    train = _beta_mcr(records=30)
    choice = scaling.from_units(train, -1.0, 0.5, 3.0)
    vectors = _vectors(30)
    targets = choice.targets(vectors, train)
    factors = torch.as_tensor(choice.factors(train), dtype=torch.float32)
    torch.testing.assert_close(targets, factors[:, None] * vectors, rtol=0, atol=0)
    assert targets.dtype == vectors.dtype
    with pytest.raises(ValueError, match="one MCR per prompt"):
        choice.targets(vectors, train[:29])
    with pytest.raises(ValueError, match="one MCR per prompt"):
        choice.targets(vectors[None], train[:1])


# --- infeasible scalings ---------------------------------------------------------------------------------------------


def test_infeasible_scaling_raises_naming_it():
    train = _beta_mcr()
    # β = +2 units anchored at the 0.75 quantile zeroes every record below r − sd/2: 56 % of them.
    raw = np.maximum(0.0, 1 + 2.0 / train.std(ddof=1) * (train - np.quantile(train, 0.75)))
    reachable = 1.5 * np.mean(raw > 0)
    assert reachable < 1
    with pytest.raises(
        ValueError, match=rf"infeasible scaling: with max_factor 1.5 the mean factor reaches only {reachable:.3f}"
    ):
        scaling.from_units(train, 2.0, 0.75, 1.5)
    scaling.from_units(train, 2.0, 0.75, 3.0)  # feasible with a looser bound
    with pytest.raises(ValueError, match="max_factor must be at least 1"):
        scaling.normaliser(np.ones(4), 0.9)
    with pytest.raises(ValueError, match="no finite steering-training MCR"):
        scaling.normaliser(np.array([np.nan]), 3.0)


def test_candidates_leave_out_infeasible_ones_and_say_why():
    train = _beta_mcr()
    feasible, skipped = scaling.candidates(train, [1, -1], [2.0, 0.5], [0.75, 0.25], 1.5)
    # Grid order: sign, then |β| units and quantiles ascending; (+2, 0.75) and (−2, 0.25) cannot reach mean 1.
    assert [(c.beta_units, c.anchor_quantile) for c in feasible] == [
        (0.5, 0.25),
        (0.5, 0.75),
        (2.0, 0.25),
        (-0.5, 0.25),
        (-0.5, 0.75),
        (-2.0, 0.75),
    ]
    assert {c.name for c in feasible} >= {"b+0.5_q0.25", "b-2_q0.75"}
    assert len(skipped) == 2
    assert skipped[0].startswith("β units +2, anchor quantile 0.75: infeasible scaling")
    assert skipped[1].startswith("β units -2, anchor quantile 0.25: infeasible scaling")
    for candidate in feasible:
        assert abs(candidate.factors(train).mean() - 1) < 1e-9
    assert scaling.candidates(train, [], [1.0], [0.5], 3.0) == ([], [])
    with pytest.raises(ValueError, match="must be positive"):
        scaling.candidates(train, [1], [-1.0], [0.5], 3.0)


# --- units ---------------------------------------------------------------------------------------------------------


def test_units_are_one_over_sd_and_a_quantile_of_the_finite_training_mcr():
    train = np.array([0.1, 0.2, 0.3, 0.4, 0.5, np.nan])
    sd = np.std(train[:5], ddof=1)
    choice = scaling.from_units(train, 2.0, 0.25, 3.0)
    assert choice.beta == pytest.approx(2.0 / sd) and choice.r_anchor == pytest.approx(0.2)
    assert (choice.beta_units, choice.anchor_quantile, choice.max_factor) == (2.0, 0.25, 3.0)
    assert choice.name == "b+2_q0.25"
    assert scaling.from_units(train, -0.5, 0.75, 3.0).name == "b-0.5_q0.75"
    assert scaling.mcr_spread(train) == pytest.approx(sd)
    with pytest.raises(ValueError, match="anchor quantile must lie in"):
        scaling.from_units(train, 1.0, 1.5, 3.0)
    with pytest.raises(ValueError, match="at least 2 finite"):
        scaling.from_units(np.array([0.3, np.nan]), 1.0, 0.5, 3.0)
    with pytest.raises(ValueError, match="must be finite"):
        scaling.gamma(np.array([0.1]), math.inf, 0.5)


def test_fixed_values_report_their_units_back():
    train = np.array([0.2, 0.4, 0.6, 0.8])
    sd = np.std(train, ddof=1)
    choice = scaling.from_values(train, -2.0, 0.6, 3.0)
    assert (choice.beta, choice.r_anchor) == (-2.0, 0.6)
    # β units = β·sd; the anchor's quantile is the share of training values at or below it.
    assert choice.beta_units == pytest.approx(-2.0 * sd) and choice.anchor_quantile == 0.75
    assert choice.name == f"b{-2.0 * sd:+g}_q0.75"
    # The units round-trip through from_units.
    again = scaling.from_units(train, choice.beta_units, 0.5, 3.0)
    assert again.beta == pytest.approx(-2.0)
    assert abs(choice.factors(train).mean() - 1) < 1e-9


# --- factor summary ------------------------------------------------------------------------------------------------


def test_factor_summary_on_a_hand_computed_example():
    summary = scaling.factor_summary(np.array([0.0, 0.5, 1.0, 1.5, 2.0]), max_factor=2.0)
    assert summary == pytest.approx(
        {
            "factor_mean": 1.0,
            "factor_sd": math.sqrt(2.5 / 4),
            "factor_min": 0.0,
            "factor_p10": 0.2,
            "factor_median": 1.0,
            "factor_p90": 1.8,
            "factor_max": 2.0,
            "factor_share_zero": 0.2,
            "factor_share_bound": 0.2,
        }
    )
    single = scaling.factor_summary(np.array([1.0]), max_factor=3.0)
    assert single["factor_sd"] == 0.0 and single["factor_share_bound"] == 0.0 and single["factor_share_zero"] == 0.0


# --- the sign test -------------------------------------------------------------------------------------------------


def _monotone(records: int = 60, noise: float = 0.05, seed: int = 1) -> tuple[pd.Series, pd.Series]:
    rng = np.random.default_rng(seed)
    mcr = rng.uniform(0, 1, records)
    return pd.Series(mcr), pd.Series(0.5 + 2 * mcr + rng.normal(0, noise, records))


def test_sign_test_gives_the_sign_of_a_strong_link_with_an_interval_excluding_zero():
    mcr, reaction = _monotone()
    positive = scaling.sign_test(mcr, reaction, 0.95, 1000, seed=0)
    assert positive.correlation > 0.9 and positive.low > 0 and positive.high <= 1
    assert (positive.sign, positive.significant, positive.records) == (1, True, 60)
    negative = scaling.sign_test(mcr, -reaction, 0.95, 1000, seed=0)
    assert negative.correlation == pytest.approx(-positive.correlation)
    assert negative.high < 0 and (negative.sign, negative.significant) == (-1, True)
    # The correlation is Spearman's.
    assert positive.correlation == pytest.approx(scipy.stats.spearmanr(mcr, reaction).statistic)


def test_a_weak_link_whose_interval_spans_zero_sets_no_sign():
    # ρ ≈ −0.18 on 60 records: the old rule took its sign (β < 0); the interval spans 0, so β = 0 now.
    rng = np.random.default_rng(15)
    mcr = rng.uniform(0, 1, 60)
    reaction = -0.25 * mcr + rng.normal(0, 0.3, 60)
    test = scaling.sign_test(pd.Series(mcr), pd.Series(reaction), 0.95, 1000, seed=0)
    assert -0.22 < test.correlation < -0.16
    assert test.low < 0 < test.high
    assert (test.sign, test.significant) == (0, False)
    # A narrower interval (50 %) excludes 0 for the same data: the sign follows the interval, not ρ alone.
    assert scaling.sign_test(pd.Series(mcr), pd.Series(reaction), 0.5, 1000, seed=0).sign == -1


def test_records_that_never_react_rank_above_all_others():
    mcr, reaction = _monotone()
    never = reaction.copy()
    never[mcr > 0.7] = np.nan  # the highest-MCR records never react within the grid
    assert never.isna().sum() >= 10
    test = scaling.sign_test(mcr, never, 0.95, 500, seed=0)
    as_large = scaling.sign_test(mcr, never.fillna(1e9), 0.95, 500, seed=0)
    as_small = scaling.sign_test(mcr, never.fillna(-1e9), 0.95, 500, seed=0)
    assert test.correlation == pytest.approx(as_large.correlation) and (test.low, test.high) == pytest.approx(
        (as_large.low, as_large.high)
    )
    assert test.sign == 1 and as_small.correlation < 0.5 < test.correlation


def test_records_without_mcr_are_left_out_of_the_sign_test():
    mcr, reaction = _monotone()
    holes = mcr.copy()
    holes.iloc[[0, 5, 9]] = np.nan
    test = scaling.sign_test(holes, reaction, 0.95, 200, seed=0)
    keep = holes.notna()
    assert test.records == 57
    assert test.correlation == pytest.approx(statistics.spearman(mcr[keep].to_numpy(), reaction[keep].to_numpy()))
    # Too few records: no correlation, no sign.
    few = scaling.sign_test(pd.Series([0.1, np.nan, 0.3]), pd.Series([1.0, 2.0, 3.0]), 0.95, 100, seed=0)
    assert few.records == 2 and math.isnan(few.correlation) and few.sign == 0
    # No variation in the reaction: no correlation, no sign.
    assert scaling.sign_test(mcr, pd.Series(np.ones(60)), 0.95, 100, seed=0).sign == 0


def test_choice_maximises_shift_within_the_collapse_bound():
    scores = pd.DataFrame({"shift": [0.1, 0.4, 0.4, 0.9], "collapse": [0.0, 0.02, 0.01, 0.3]})
    assert scaling.choose(scores, 0.05) == (1, True)  # ties go to the earlier row
    assert scaling.choose(scores, 0.5) == (3, True)
    assert scaling.choose(scores, 0.3) == (3, True)  # on the bound is within
    # None within the bound: the least collapse (first of equals), flagged.
    assert scaling.choose(scores.assign(collapse=[0.2, 0.3, 0.1, 0.4]), 0.05) == (2, False)
    assert scaling.choose(scores.assign(collapse=[0.2, 0.1, 0.1, 0.4]), 0.05) == (1, False)
    with pytest.raises(ValueError, match="no points"):
        scaling.choose(scores.iloc[:0], 0.05)


def test_estimator_names_map_to_mcr_columns():
    assert mcr_column("entropy") == "mcr" and mcr_column("fisher") == "mcr_fisher"
    with pytest.raises(ValueError, match="unknown MCR estimator"):
        mcr_column("variance")


# --- config --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _loaded_config() -> dict:
    with open(REPO / "config" / "config.yaml") as handle:
        return yaml.safe_load(handle)


@pytest.fixture()
def default_config(_loaded_config) -> dict:
    return copy.deepcopy(_loaded_config)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda amps: amps.update(beta=1.0, r_anchor=None), "amps.beta and amps.r_anchor must both be set"),
        (lambda amps: amps.update(beta=None, r_anchor=0.3), "amps.beta and amps.r_anchor must both be set"),
        (
            lambda amps: amps.update(collapse_budgets=[0.02, 0.5]),
            r"amps.collapse_budgets \[0.02, 0.5\] reach beyond amps.curve.max_collapse",
        ),
        (lambda amps: amps["ablation"].update(model="toy-xl"), "amps.ablation.model: 'toy-xl' is not one of the models"),
        (lambda amps: amps.update(estimator="variance"), "config key 'amps.estimator'"),
        (lambda amps: amps.update(max_factor=0.5), "config key 'amps.max_factor'"),
        (lambda amps: amps["curve"].update(tolerance=0), "config key 'amps.curve.tolerance'"),
    ],
    ids=["beta-alone", "anchor-alone", "budget-beyond-curve", "ablation-model", "estimator", "max-factor", "tolerance"],
)
def test_bad_amps_settings_stop_the_run_before_any_job(default_config, change, message):
    change(default_config["amps"])
    with pytest.raises(ConfigError, match=message):
        validate_config(default_config)


def test_the_default_amps_settings_are_valid_and_a_fixed_beta_is_accepted(default_config):
    default_config["amps"].update(beta=-2.0, r_anchor=0.6)
    amps = validate_config(default_config)["amps"]
    assert (amps["beta"], amps["r_anchor"]) == (-2.0, 0.6)
    assert max(amps["collapse_budgets"]) <= amps["curve"]["max_collapse"]
    assert amps["max_factor"] >= 1
    CurveSettings.from_config(amps["curve"])  # the validated section builds the curve settings
