"""Measured strength curves: refined until neighbours are close, stopped past the collapse bound, capped."""

from __future__ import annotations

import math

import pytest

from amps.core.config import ConfigError
from amps.method.curves import Curve, CurvePoint, CurveSettings, measure_curve

from steps import config_with

GRID = [0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 10]


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def smooth(strength: float) -> tuple[float, float]:
    """Shift and collapse rising smoothly (logistic) from 0 at strength 0; collapse passes 0.3 just after 3."""
    shift = 0.9 * (_sigmoid(2 * (strength - 1.5)) - _sigmoid(-3))
    collapse = 0.6 * (_sigmoid(2.5 * (strength - 3)) - _sigmoid(-7.5))
    return shift, collapse


class Recorder:
    """An evaluate function that remembers every strength it was called with."""

    def __init__(self, function):
        self.function = function
        self.calls: list[float] = []

    def __call__(self, strength: float) -> tuple[float, float]:
        self.calls.append(strength)
        return self.function(strength)


def test_a_smooth_curve_from_a_coarse_grid_ends_resolved_where_it_is_read():
    settings = CurveSettings(tolerance=0.05, max_points=60, max_collapse=0.3, min_gap=0.01)
    evaluate = Recorder(smooth)
    curve = measure_curve(evaluate, GRID, settings)

    assert len(evaluate.calls) == len(set(evaluate.calls))  # never twice for one strength
    assert curve.measured == len(evaluate.calls) == len(curve.points) - 1
    # Bounded: well under max_points (so not capped); the shift's rise of ~0.82 alone needs ~17 intervals of 0.05.
    assert 17 <= len(evaluate.calls) <= 40
    assert curve.points[0] == CurvePoint(0.0, 0.0, 0.0)
    strengths = [point.strength for point in curve.points]
    assert strengths == sorted(strengths) and len(set(strengths)) == len(strengths)
    for point in curve.points[1:]:
        assert (point.shift, point.collapse) == pytest.approx(smooth(point.strength), abs=0)

    read = [(low, high) for low, high in zip(curve.points, curve.points[1:]) if low.collapse <= 0.3]
    assert len(read) >= 17
    for low, high in read:
        assert abs(high.shift - low.shift) <= 0.05 and abs(high.collapse - low.collapse) <= 0.05, (low, high)
    assert curve.resolved
    shift_gap, collapse_gap = curve.gaps()
    assert shift_gap == max(abs(high.shift - low.shift) for low, high in read) <= 0.05
    assert collapse_gap == max(abs(high.collapse - low.collapse) for low, high in read) <= 0.05
    # Collapse exceeds 0.3 at 4 and 6 (two consecutive grid points): 8 and 10 are never evaluated.
    assert smooth(4)[1] > 0.3 and smooth(6)[1] > 0.3
    assert 4 in evaluate.calls and 6 in evaluate.calls
    assert 8 not in evaluate.calls and 10 not in evaluate.calls
    # Beyond the bound nothing is refined: no point between 4 and 6.
    assert not [s for s in evaluate.calls if 4 < s < 6]
    # (3, 4) is read (collapse 0.2997 at 3) and split down to 3.5, 3.25, 3.125; (3.5, 4) is not read: no point in it.
    assert [s for s in evaluate.calls if s > 3] == [4, 6, 3.5, 3.25, 3.125]


def _table(values: dict[float, float]):
    """Collapse from a table (shift 0): no refinement with tolerance 1."""
    return lambda strength: (0.0, values[strength])


def test_extension_stops_after_two_consecutive_points_beyond_the_bound_but_required_ones_are_measured():
    settings = CurveSettings(tolerance=1.0, max_points=20, max_collapse=0.3, min_gap=0.01)
    # 2 is beyond, 3 is back within (the count restarts), 4 and 5 are beyond: 6 and 7 are not evaluated.
    collapse = {1: 0.0, 2: 0.5, 3: 0.1, 4: 0.5, 5: 0.6, 6: 0.7, 7: 0.8, 9: 0.9}
    evaluate = Recorder(_table(collapse))
    curve = measure_curve(evaluate, [1, 2, 3, 4, 5, 6, 7], settings)
    assert evaluate.calls == [1, 2, 3, 4, 5]
    assert [point.strength for point in curve.points] == [0, 1, 2, 3, 4, 5]

    evaluate = Recorder(_table(collapse))
    curve = measure_curve(evaluate, [7, 5, 1, 3, 2, 4, 6], settings, required=(9, 2))
    assert evaluate.calls == [1, 2, 3, 4, 5, 9]  # grid in strength order; 2 already measured, 9 beyond the stop
    assert [point.strength for point in curve.points] == [0, 1, 2, 3, 4, 5, 9]
    assert curve.points[-1].collapse == 0.9


def test_a_step_cannot_be_resolved_refinement_stops_at_min_gap_and_reports_the_jump():
    settings = CurveSettings(tolerance=0.05, max_points=50, max_collapse=0.3, min_gap=0.01)
    evaluate = Recorder(lambda strength: (0.5 if strength >= 1.3 else 0.0, 0.0))
    curve = measure_curve(evaluate, [1, 2], settings)
    # Bisection of (1, 2) towards 1.3: 1.5, 1.25, 1.375, 1.3125, 1.28125, 1.296875, 1.3046875; the last bracket is
    # 0.0078125 wide (<= min_gap), so it is not split again.
    assert evaluate.calls == [1, 2, 1.5, 1.25, 1.375, 1.3125, 1.28125, 1.296875, 1.3046875]
    assert not curve.resolved
    assert curve.gaps() == (0.5, 0.0)
    jumps = [(low, high) for low, high in zip(curve.points, curve.points[1:]) if high.shift != low.shift]
    assert len(jumps) == 1
    low, high = jumps[0]
    assert (low.strength, high.strength) == (1.296875, 1.3046875)
    assert high.strength - low.strength <= settings.min_gap


def test_max_points_caps_the_evaluations_and_the_curve_can_then_be_unresolved():
    # The grid alone is longer than the cap: only its first max_points strengths are measured.
    evaluate = Recorder(smooth)
    curve = measure_curve(evaluate, GRID, CurveSettings(tolerance=0.05, max_points=4, max_collapse=0.3, min_gap=0.01))
    assert evaluate.calls == [0.25, 0.5, 0.75, 1]
    assert curve.measured == 4 and not curve.resolved

    # With one point of room, the widest read interval is split first: (2, 3) differs by 0.7.
    values = {1: (0.1, 0.0), 2: (0.2, 0.0), 3: (0.9, 0.0), 2.5: (0.5, 0.0)}
    evaluate = Recorder(lambda strength: values[strength])
    curve = measure_curve(evaluate, [1, 2, 3], CurveSettings(tolerance=0.05, max_points=4, max_collapse=0.3, min_gap=0.01))
    assert evaluate.calls == [1, 2, 3, 2.5]
    assert not curve.resolved and curve.gaps() == pytest.approx((0.4, 0.0))

    # The same smooth curve with enough room is resolved.
    assert measure_curve(smooth, GRID, CurveSettings(tolerance=0.05, max_points=60, max_collapse=0.3, min_gap=0.01)).resolved


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"tolerance": 0.0}, "amps.curve.tolerance"),
        ({"tolerance": 1.5}, "amps.curve.tolerance"),
        ({"max_points": 0}, "amps.curve.max_points"),
        ({"max_collapse": -0.1}, "amps.curve.max_collapse"),
        ({"max_collapse": 1.1}, "amps.curve.max_collapse"),
        ({"min_gap": 0.0}, "amps.curve.min_gap"),
    ],
)
def test_bad_curve_settings_are_refused_before_any_job_naming_the_key(values, key):
    with pytest.raises(ConfigError, match=key):
        config_with(amps={"curve": values, "collapse_budgets": [0.0]})


def test_settings_from_config_and_grid_checks():
    settings = CurveSettings.from_config({"tolerance": 0.05, "max_points": 24, "max_collapse": 0.3, "min_gap": 0.01})
    assert settings == CurveSettings(0.05, 24, 0.3, 0.01)
    for grid in ([], [0.0, 1.0], [-1.0]):
        with pytest.raises(ValueError, match="must be positive and the grid non-empty"):
            measure_curve(smooth, grid, settings)
    with pytest.raises(ValueError, match=r"required \[0.0\]"):
        measure_curve(smooth, [1.0], settings, required=(0.0,))


def test_a_curve_is_read_only_where_its_weaker_end_is_within_the_bound():
    settings = CurveSettings(tolerance=0.05, max_points=24, max_collapse=0.3, min_gap=0.01)
    points = [CurvePoint(0.0, 0.0, 0.0), CurvePoint(1.0, 0.04, 0.3), CurvePoint(2.0, 0.9, 0.9), CurvePoint(3.0, 0.0, 0.0)]
    curve = Curve(points, settings)
    # (1, 2) is read (collapse 0.3 at its weaker end, on the bound); (2, 3) is not.
    assert curve.read_intervals() == [(points[0], points[1]), (points[1], points[2])]
    assert curve.gaps() == pytest.approx((0.86, 0.6))
    assert not curve.resolved and curve.measured == 3
    assert Curve(points[:2], CurveSettings(0.3, 24, 0.3, 0.01)).resolved  # gaps (0.04, 0.3): on the tolerance
    assert Curve(points[:1], settings).gaps() == (0.0, 0.0)
