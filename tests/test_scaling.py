"""The AMPS target: γ = 0 is Learn-to-Steer's target, the clamp, units of β and r, the sign from the data, the choice."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from amps import scaling
from amps.config import ConfigError, validate_config
from conftest import REPO


def _vectors_and_mcr(seed: int = 0, records: int = 12, hidden: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(records, hidden, generator=generator), torch.rand(records, generator=generator)


def test_gamma_zero_gives_the_learn_to_steer_target_exactly():
    vectors, mcr = _vectors_and_mcr()
    for r_anchor in (0.0, 0.37, 1.0):
        assert torch.equal(scaling.scaled_targets(vectors, mcr, 0.0, r_anchor), vectors)


def test_target_is_one_plus_gamma_times_v_and_never_reverses():
    vectors, _ = _vectors_and_mcr(records=3)
    mcr = torch.tensor([0.2, 0.5, 0.9])
    targets = scaling.scaled_targets(vectors, mcr, 4.0, 0.5)
    # γ = 4 (MCR − 0.5) = (−1.2, 0, 1.6): factors max(0, 1 + γ) = (0, 1, 2.6).
    torch.testing.assert_close(targets, torch.stack([0 * vectors[0], vectors[1], 2.6 * vectors[2]]))
    assert torch.equal(scaling.scale_factor(torch.tensor([-3.0, -1.0, 0.5])), torch.tensor([0.0, 0.0, 1.5]))


def test_gamma_refuses_missing_mcr_and_mismatched_shapes():
    with pytest.raises(ValueError, match="1 of 3 MCR values are not finite"):
        scaling.gamma(torch.tensor([0.1, math.nan, 0.3]), 1.0, 0.5)
    with pytest.raises(ValueError, match="one MCR per record"):
        scaling.scaled_targets(torch.zeros(3, 4), torch.zeros(2), 1.0, 0.5)


def test_units_are_one_over_sd_and_a_quantile_of_the_training_mcr():
    train = np.array([0.1, 0.2, 0.3, 0.4, 0.5, np.nan])
    choice = scaling.from_units(train, 2.0, 0.25)
    finite = train[:5]
    assert choice.beta == pytest.approx(2.0 / finite.std(ddof=1))
    assert choice.r_anchor == pytest.approx(0.2)
    assert scaling.from_units(np.array([0.3, 0.3, 0.3]), 2.0, 0.5).beta == 0.0  # no spread: γ cannot tell records apart


def test_sign_of_beta_comes_from_the_sensitivity_correlation():
    mcr = pd.Series([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    # High-MCR records react later (or never, NaN): they tolerate more steering, so β > 0.
    tolerant = pd.Series([0.5, 0.5, 1.0, 2.0, 4.0, np.nan])
    rho = scaling.sensitivity_correlation(mcr, tolerant)
    assert rho > 0.9 and scaling.beta_sign(rho) == 1
    rho = scaling.sensitivity_correlation(mcr, tolerant[::-1].reset_index(drop=True))
    assert rho < -0.9 and scaling.beta_sign(rho) == -1
    assert scaling.beta_sign(scaling.sensitivity_correlation(mcr, pd.Series([1.0] * 6))) == 0


def test_reaction_strength_is_the_first_flip_or_collapse():
    flip = pd.Series([1.0, np.nan, 0.0, np.nan])
    collapse = pd.Series([0.5, 2.0, np.nan, np.nan])
    reaction = scaling.reaction_strength(flip, collapse)
    assert reaction.iloc[:3].tolist() == [0.5, 2.0, 0.0] and math.isnan(reaction.iloc[3])


def test_grid_starts_at_beta_zero_and_takes_the_data_sign():
    train = np.linspace(0.0, 1.0, 11)
    grid = scaling.scaling_grid(train, -1, [1.0, 2.0], [0.25, 0.75])
    assert grid[0].beta == 0.0 and len(grid) == 5
    assert all(choice.beta < 0 for choice in grid[1:])
    assert scaling.scaling_grid(train, 0, [1.0, 2.0], [0.5]) == grid[:1]
    with pytest.raises(ValueError, match="must be positive"):
        scaling.scaling_grid(train, 1, [-1.0], [0.5])


def test_choice_maximises_shift_within_the_collapse_bound():
    scores = pd.DataFrame({"shift": [0.1, 0.4, 0.4, 0.9], "collapse": [0.0, 0.02, 0.01, 0.3]})
    assert scaling.choose(scores, 0.05) == (1, True)  # ties go to the earlier grid point
    assert scaling.choose(scores, 0.5) == (3, True)
    assert scaling.choose(scores.assign(collapse=[0.2, 0.3, 0.1, 0.4]), 0.05) == (2, False)


def test_estimator_names_map_to_mcr_columns():
    assert scaling.mcr_column("entropy") == "mcr" and scaling.mcr_column("fisher") == "mcr_fisher"
    with pytest.raises(ValueError, match="unknown MCR estimator"):
        scaling.mcr_column("variance")


@pytest.fixture()
def default_config() -> dict:
    with open(REPO / "config" / "config.yaml") as handle:
        return yaml.safe_load(handle)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda amps: amps.update(beta=1.0), "must both be set"),
        (lambda amps: amps.update(multipliers=[0.5, 2]), "must contain 1"),
        (lambda amps: amps["ablation"].update(model="toy-xl"), "amps.ablation.model: 'toy-xl' is not one of the models"),
        (lambda amps: amps.update(estimator="variance"), "amps.estimator"),
    ],
)
def test_bad_amps_settings_stop_the_run_before_any_job(default_config, change, message):
    change(default_config["amps"])
    with pytest.raises(ConfigError, match=message):
        validate_config(default_config)


def test_fixed_beta_and_anchor_are_accepted_with_their_units(default_config):
    default_config["amps"].update(beta=-2.0, r_anchor=0.6)
    assert validate_config(default_config)["amps"]["beta"] == -2.0
    choice = scaling.from_values(np.array([0.2, 0.4, 0.6, 0.8]), -2.0, 0.6)
    assert choice.beta_units == pytest.approx(-2.0 * np.std([0.2, 0.4, 0.6, 0.8], ddof=1)) and choice.anchor_quantile == 0.75
