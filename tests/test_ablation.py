"""The ablation variants: each family changes one thing against the validation choice, and marks the chosen one."""

from __future__ import annotations

import pytest

from amps.ablation import FAMILIES, variants

SETTINGS = {
    "model": {"steering_layers": [1, 0, 2]},
    "mcr": {"samples": 32},
    "amps": {
        "vector": "per_sample", "estimator": "entropy", "beta_units": [0.25, 0.5], "anchor_quantiles": [0.5, 0.75],
        "ablation": {"direction": "to_vision", "beta_units": [-1.0, 0.0, 1.0], "samples": [8], "mc_seeds": 2},
    },
}
SELECTION = {
    "to_vision": {
        "module": {"beta": 4.0, "beta_units": 0.25, "anchor_quantile": 0.75, "beta_sign": 1},
        # AMPS-online chose no scaling (β = 0): its anchor is idle.
        "online": {"beta": 0.0, "beta_units": 0.0, "anchor_quantile": 0.5, "beta_sign": -1},
    }
}


def _by_value(family: str) -> dict:
    return {variant.value: variant for variant in variants(family, SETTINGS, SELECTION)}


def test_beta_family_spans_both_signs_and_both_choices():
    found = _by_value("beta")
    assert sorted(found, key=float) == ["-1", "0", "0.25", "1"]
    assert [value for value, variant in found.items() if variant.chosen] == ["0.25"]
    assert [value for value, variant in found.items() if variant.online_chosen] == ["0"]
    assert all(variant.anchor_quantile == 0.75 for variant in found.values())


def test_anchor_family_gives_an_idle_beta_a_unit_with_the_data_sign():
    found = _by_value("anchor")
    assert list(found) == ["0.5", "0.75"]
    assert found["0.75"].chosen and not found["0.5"].chosen
    assert {variant.beta_units for variant in found.values()} == {0.25}
    # Online chose β = 0; the anchor family runs it at the smallest grid unit with the data's sign.
    assert {variant.online_beta_units for variant in found.values()} == {-0.25}
    assert not any(variant.online_chosen for variant in found.values())


def test_other_families_vary_one_setting():
    layers = _by_value("layer")
    assert list(layers) == ["0", "1", "2"] and layers["1"].chosen and layers["2"].layer == 2
    samples = _by_value("samples")
    assert list(samples) == ["N=8, MC seed +0", "N=8, MC seed +1", "N=32, MC seed +0"]
    assert samples["N=32, MC seed +0"].chosen and samples["N=8, MC seed +1"].mc_seed_offset == 1
    assert [variant.estimator for variant in _by_value("estimator").values()] == ["entropy", "fisher"]
    assert _by_value("vector")["per_sample"].chosen and _by_value("vector")["mean"].vector == "mean"
    with pytest.raises(ValueError, match="unknown ablation family"):
        variants("width", SETTINGS, SELECTION)
    assert len(FAMILIES) == 6
