"""Strength curves that are measured, not drawn: adaptive refinement until neighbours are close.

A method's strength curve is its (shift, collapse) at a set of strengths, starting from no steering
(strength 0: shift 0, collapse 0 by definition). Comparisons read values *between* measured
neighbours, so neighbours must be close: :func:`measure_curve` evaluates the strength grid from
the weakest strength up, stops extending once the collapse has passed ``max_collapse`` at two
consecutive strengths (nothing beyond is read), then bisects every interval of the curve whose
ends differ by more than ``tolerance`` in shift or in collapse, until none does, the interval is
narrower than ``min_gap`` (a jump the strength cannot resolve), or the curve holds ``max_points``
measured points. The result says whether it is resolved everywhere it is read.

Nothing here knows about models: ``evaluate(strength)`` returns the shift and collapse at that
strength (and the caller keeps the answers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CurveSettings:
    """How dense a curve must be (the config's ``amps.curve`` section; the schema checks its ranges)."""

    tolerance: float
    max_points: int
    max_collapse: float
    min_gap: float

    @classmethod
    def from_config(cls, section: dict) -> "CurveSettings":
        return cls(section["tolerance"], section["max_points"], section["max_collapse"], section["min_gap"])


@dataclass(frozen=True)
class CurvePoint:
    """One measured point of a curve (strength 0 is no steering)."""

    strength: float
    shift: float
    collapse: float


@dataclass
class Curve:
    """The measured points in strength order, and how well they resolve the curve."""

    points: list[CurvePoint]
    settings: CurveSettings

    def read_intervals(self) -> list[tuple[CurvePoint, CurvePoint]]:
        """Neighbouring points where the curve is read: those whose weaker end has collapse within ``max_collapse``."""
        return [
            (low, high) for low, high in zip(self.points, self.points[1:]) if low.collapse <= self.settings.max_collapse + 1e-12
        ]

    def gaps(self) -> tuple[float, float]:
        """The largest shift and collapse differences between neighbours where the curve is read."""
        intervals = self.read_intervals()
        if not intervals:
            return 0.0, 0.0
        return (
            max(abs(high.shift - low.shift) for low, high in intervals),
            max(abs(high.collapse - low.collapse) for low, high in intervals),
        )

    @property
    def resolved(self) -> bool:
        """Whether every read interval differs by at most the tolerance in shift and in collapse."""
        return max(self.gaps()) <= self.settings.tolerance + 1e-12

    @property
    def measured(self) -> int:
        """Points measured (no steering excluded)."""
        return len(self.points) - 1


def _needs_split(low: CurvePoint, high: CurvePoint, settings: CurveSettings) -> bool:
    wide = max(abs(high.shift - low.shift), abs(high.collapse - low.collapse)) > settings.tolerance + 1e-12
    return wide and high.strength - low.strength > settings.min_gap + 1e-12


def measure_curve(
    evaluate: Callable[[float], tuple[float, float]], grid: list[float], settings: CurveSettings, required: tuple[float, ...] = ()
) -> Curve:
    """Measure a curve on ``grid`` (positive strengths) and refine it (see the module docstring).

    ``required`` strengths (e.g. the method's validation choice) are always measured, also beyond
    where the curve stops extending.
    """
    if not grid or any(not strength > 0 for strength in [*grid, *required]):
        raise ValueError(
            f"a curve's strengths must be positive and the grid non-empty, got grid {grid}, required {list(required)}"
        )
    measured: dict[float, CurvePoint] = {}

    def measure(strength: float) -> CurvePoint:
        if strength not in measured:
            shift, collapse = evaluate(strength)
            measured[strength] = CurvePoint(strength, float(shift), float(collapse))
        return measured[strength]

    beyond = 0
    for strength in sorted(set(grid)):
        if len(measured) >= settings.max_points:
            break
        beyond = beyond + 1 if measure(strength).collapse > settings.max_collapse + 1e-12 else 0
        if beyond == 2:
            break
    for strength in required:
        measure(float(strength))
    while True:
        curve = Curve([CurvePoint(0.0, 0.0, 0.0)] + [measured[s] for s in sorted(measured)], settings)
        splits = [(low, high) for low, high in curve.read_intervals() if _needs_split(low, high, settings)]
        room = settings.max_points - len(measured)
        if not splits or room <= 0:
            break
        splits.sort(key=lambda pair: -max(abs(pair[1].shift - pair[0].shift), abs(pair[1].collapse - pair[0].collapse)))
        for low, high in splits[:room]:
            measure((low.strength + high.strength) / 2)
    if not curve.resolved:
        log.info(
            "curve not resolved to %.2f within %d points (largest gaps: shift %.3f, collapse %.3f)",
            settings.tolerance,
            settings.max_points,
            *curve.gaps(),
        )
    return curve
