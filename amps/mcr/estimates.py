"""The MCR's estimators from Monte Carlo samples: functional entropy, sample means, the average over option
orders and the contribution ratio, each with its delta-method standard error (numpy only)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo estimate and its standard error."""

    value: float
    se: float


def functional_entropy(f: np.ndarray) -> Estimate:
    """``E[f log f] - E[f] log E[f]`` and its delta-method standard error.

    Computed as ``mean(f (log f - log mean f))`` in float64 (the same quantity), so that equal
    samples give zero up to rounding rather than the difference of two large terms. ``0 log 0 = 0``.
    Non-finite samples give NaN.
    """
    f = np.asarray(f, dtype=np.float64)
    if len(f) < 2:
        raise ValueError(f"the functional entropy needs at least 2 samples, got {len(f)}")
    if not np.isfinite(f).all() or (f < 0).any():
        return Estimate(math.nan, math.nan)
    mean = f.mean()
    if mean == 0:
        return Estimate(0.0, 0.0)
    log_f = np.log(np.where(f > 0, f, 1.0))
    log_mean = math.log(mean)
    entropy = float(np.mean(f * (log_f - log_mean)))
    # Influence of each sample on g(a, b) = a - b log b, with a = mean(f log f) and b = mean(f).
    influence = f * log_f - (log_mean + 1.0) * f
    return Estimate(entropy, float(influence.std(ddof=1) / math.sqrt(len(f))))


def sample_mean(values: np.ndarray) -> Estimate:
    """The mean of Monte Carlo values and its standard error (NaN if any value is non-finite)."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        return Estimate(math.nan, math.nan)
    return Estimate(float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values))))


def order_average(estimates: Sequence[Estimate]) -> Estimate:
    """The mean of independent estimates (one per option order) and its standard error."""
    count = len(estimates)
    return Estimate(
        sum(estimate.value for estimate in estimates) / count,
        math.sqrt(sum(estimate.se**2 for estimate in estimates)) / count,
    )


def contribution_ratio(text: Estimate, image: Estimate) -> Estimate:
    """``text / (text + image)`` and its delta-method standard error (the two are drawn independently)."""
    total = text.value + image.value
    if not total > 0:
        return Estimate(math.nan, math.nan)
    se = math.sqrt((image.value * text.se) ** 2 + (text.value * image.se) ** 2) / total**2
    return Estimate(text.value / total, se)
