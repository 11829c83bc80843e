"""The ablation variants: each family changes one thing against the validation choice, and marks the chosen one."""

from __future__ import annotations

import copy

import pytest

from amps.method.ablate import anchor_units, chosen_units, variants
from amps.method.steps import AblateAmps
from amps.vocabulary import ABLATION_FAMILIES

from steps import TINY_MODEL, build

SETTINGS = build(
    AblateAmps,
    {
        "models": {"m": {**TINY_MODEL, "steering_layers": [1, 0, 2]}},
        "mcr": {"samples": 32},
        "amps": {
            "vector": "per_sample",
            "estimator": "entropy",
            "beta_units": [0.5, 0.25],
            "anchor_quantiles": [0.75, 0.5],
            "ablation": {"direction": "to_vision", "beta_units": [-1.0, 0.0, 1.0], "samples": [8], "mc_seeds": 2},
        },
    },
)


def _seeds(*strengths: float) -> list[dict]:
    return [
        {"seed": seed, "strength": strength, "within_bound": True, "shift": 0.3, "collapse": 0.02, "at_grid_edge": False}
        for seed, strength in enumerate(strengths)
    ]


def _scaling(beta: float, units: float, quantile: float, r_anchor: float) -> dict:
    name = "b0" if beta == 0.0 else f"b{units:+g}_q{quantile:g}"
    return {
        "name": name,
        "beta": beta,
        "r_anchor": r_anchor,
        "beta_units": units,
        "anchor_quantile": quantile,
        "max_factor": 3.0,
        "normaliser": 1.0,
        "factor_mean": 1.0,
        "factor_sd": 0.2,
        "factor_min": 0.5,
        "factor_p10": 0.7,
        "factor_median": 1.0,
        "factor_p90": 1.3,
        "factor_max": 1.8,
        "factor_share_zero": 0.0,
        "factor_share_bound": 0.0,
    }


def _sign(sign: int, source: str) -> dict:
    return {
        "correlation": 0.4 * sign if sign else 0.05,
        "low": 0.1 * sign if sign else -0.2,
        "high": 0.6 * sign if sign else 0.3,
        "records": 40,
        "sign": sign,
        "significant": sign != 0,
        "source": source,
    }


# As select_direction writes it (amps.method.select): per direction, per method.
SELECTION = {
    "model": "m",
    "layer": 1,
    "estimator": "entropy",
    "max_collapse": 0.05,
    "strengths": [1.0, 2.0, 4.0],
    "train_mcr_sd": 0.0625,
    "to_vision": {
        "mean": {"seeds": _seeds(2.0)},
        "p2s": {"seeds": _seeds(1.0)},
        "l2s": {"seeds": _seeds(2.0, 4.0)},
        "amps": {"scaling": _scaling(4.0, 0.25, 0.75, 1.2), "sign": _sign(1, "l2s"), "skipped": [], "seeds": _seeds(2.0, 2.0)},
        # AMPS-online found a negative link, but β = 0 won on validation: its anchor is idle.
        "amps_online": {
            "scaling": _scaling(0.0, 0.0, 0.5, 0.0),
            "sign": _sign(-1, "mean"),
            "skipped": ["b-0.5_q0.75"],
            "seeds": _seeds(4.0),
        },
    },
    # The other direction chose otherwise: the ablations read only amps.ablation.direction.
    "to_text": {
        "mean": {"seeds": _seeds(1.0)},
        "p2s": {"seeds": _seeds(1.0)},
        "l2s": {"seeds": _seeds(1.0, 1.0)},
        "amps": {"scaling": _scaling(-8.0, -0.5, 0.5, 0.9), "sign": _sign(-1, "l2s"), "skipped": [], "seeds": _seeds(1.0, 2.0)},
        "amps_online": {"scaling": _scaling(8.0, 0.5, 0.75, 1.3), "sign": _sign(1, "mean"), "skipped": [], "seeds": _seeds(2.0)},
    },
}


def _by_value(family: str, selection: dict = SELECTION) -> dict:
    return {variant.value: variant for variant in variants(family, SETTINGS, selection)}


def test_beta_family_spans_both_signs_and_both_choices():
    assert chosen_units(SELECTION["to_vision"]["amps"]) == (0.25, 0.75)
    assert chosen_units(SELECTION["to_vision"]["amps_online"]) == (0.0, 0.5)
    found = _by_value("beta")
    assert list(found) == ["-1", "0", "0.25", "1"]  # the grid, 0 and both choices, in numeric order
    assert [value for value, variant in found.items() if variant.chosen] == ["0.25"]
    assert [value for value, variant in found.items() if variant.online_chosen] == ["0"]
    assert [variant.beta_units for variant in found.values()] == [-1.0, 0.0, 0.25, 1.0]
    assert [variant.online_beta_units for variant in found.values()] == [-1.0, 0.0, 0.25, 1.0]
    # Only β changes: each method keeps its own chosen anchor, and every other setting is the default.
    assert all(variant.anchor_quantile == 0.75 and variant.online_anchor_quantile == 0.5 for variant in found.values())
    assert {(v.family, v.layer, v.vector, v.samples, v.mc_seed_offset, v.estimator) for v in found.values()} == {
        ("beta", 1, "per_sample", 32, 0, "entropy")
    }

    # A choice off the grid joins it for either method: AMPS-online chose -0.25 units, AMPS β = 0.
    other = copy.deepcopy(SELECTION)
    other["to_vision"]["amps"].update(scaling=_scaling(0.0, 0.0, 0.5, 0.0), sign=_sign(0, "l2s"))
    other["to_vision"]["amps_online"].update(scaling=_scaling(-4.0, -0.25, 0.25, 0.8))
    found = _by_value("beta", other)
    assert list(found) == ["-1", "-0.25", "0", "1"]
    assert [value for value, variant in found.items() if variant.online_chosen] == ["-0.25"]
    assert [value for value, variant in found.items() if variant.chosen] == ["0"]
    assert all(variant.anchor_quantile == 0.5 and variant.online_anchor_quantile == 0.25 for variant in found.values())
    # With β = 0 the anchor is idle: the median stands in, whatever units the record carries.
    assert chosen_units({"scaling": {"beta": 0.0, "beta_units": 0.5, "anchor_quantile": 0.25}}) == (0.0, 0.5)


def test_anchor_family_gives_an_idle_beta_a_unit_with_the_data_sign():
    found = _by_value("anchor")
    assert list(found) == ["0.5", "0.75"]
    assert [variant.anchor_quantile for variant in found.values()] == [0.5, 0.75]
    assert [variant.online_anchor_quantile for variant in found.values()] == [0.5, 0.75]
    assert found["0.75"].chosen and not found["0.5"].chosen
    assert {variant.beta_units for variant in found.values()} == {0.25}
    # Online chose β = 0 under a negative link: the anchor family runs it at the smallest grid unit, negative.
    assert {variant.online_beta_units for variant in found.values()} == {-0.25}
    assert not any(variant.online_chosen for variant in found.values())  # its 0.5 was idle, not chosen
    assert anchor_units(0.25, -1, [0.5, 0.25]) == 0.25  # a chosen β keeps its units
    assert anchor_units(0.0, -1, [0.5, 0.25]) == -0.25 and anchor_units(0.0, 0, [0.5, 0.25]) == 0.25

    # No link at all (sign 0) and β = 0 for AMPS: the positive smallest unit; no anchor marked chosen.
    idle = copy.deepcopy(SELECTION)
    idle["to_vision"]["amps"].update(scaling=_scaling(0.0, 0.0, 0.5, 0.0), sign=_sign(0, "l2s"))
    idle["to_vision"]["amps_online"].update(scaling=_scaling(-4.0, -0.25, 0.5, 1.1))
    found = _by_value("anchor", idle)
    assert {variant.beta_units for variant in found.values()} == {0.25}
    assert not any(variant.chosen for variant in found.values())
    # AMPS-online's chosen negative β keeps its units, and its anchor is marked.
    assert {variant.online_beta_units for variant in found.values()} == {-0.25}
    assert [value for value, variant in found.items() if variant.online_chosen] == ["0.5"]


def test_other_families_vary_one_setting():
    layers = _by_value("layer")
    assert list(layers) == ["0", "1", "2"] and layers["1"].chosen and layers["1"].online_chosen
    assert layers["2"].layer == 2 and not layers["2"].chosen
    assert {(v.beta_units, v.anchor_quantile, v.online_beta_units, v.online_anchor_quantile) for v in layers.values()} == {
        (0.25, 0.75, 0.0, 0.5)
    }
    samples = _by_value("samples")
    assert list(samples) == ["N=8, MC seed +0", "N=8, MC seed +1", "N=32, MC seed +0"]
    assert [value for value, variant in samples.items() if variant.chosen] == ["N=32, MC seed +0"]
    assert samples["N=8, MC seed +1"].mc_seed_offset == 1 and samples["N=8, MC seed +1"].samples == 8
    estimators = _by_value("estimator")
    assert [variant.estimator for variant in estimators.values()] == ["entropy", "fisher"]
    assert estimators["entropy"].chosen and not estimators["fisher"].online_chosen
    vectors = _by_value("vector")
    assert vectors["per_sample"].chosen and vectors["mean"].vector == "mean" and not vectors["mean"].chosen
    with pytest.raises(ValueError, match="unknown ablation family"):
        variants("width", SETTINGS, SELECTION)
    assert ABLATION_FAMILIES == ("beta", "anchor", "layer", "samples", "estimator", "vector")
