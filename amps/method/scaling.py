"""The AMPS scaling: each prompt's steering vector times a factor from its record's MCR.

``γ_i = β·(MCR_i − r_anchor)`` and the factor is ``c_i = min(κ·max(0, 1 + γ_i), max_factor)``:

* ``max(0, ·)``: a prompt is never steered the opposite way;
* ``max_factor`` bounds how much harder any one prompt is steered;
* ``κ`` (the normaliser) makes the mean factor over the steering-training records exactly 1, so
  AMPS redistributes strength across samples instead of adding it: at one strength, AMPS and
  Learn-to-Steer steer the steering-training prompts equally hard on average.

With ``β = 0`` every factor is 1 and the target is Learn-to-Steer's. β and r_anchor are chosen in
units that do not depend on how concentrated a model's MCR is: ``r_anchor`` is a quantile of the
steering-training MCR and ``|β|`` a multiple of ``1 / sd`` of that MCR.

The sign of β comes from the data: the validation records' reaction strength under the unscaled
method (the smallest strength at which a record follows the target in both orders or answers no
option) is rank-correlated with their MCR. β takes the sign of that correlation, so that records
found sensitive get weaker steering, but only when the correlation's bootstrap interval excludes 0;
otherwise there is no significant link and β = 0 (AMPS is Learn-to-Steer).

:func:`choose` is every validation choice's criterion: the largest shift whose collapse stays
within the bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from amps import statistics

#: Bisection steps of the normaliser (the factor mean is then 1 to about 1e-12).
NORMALISER_STEPS = 200


def gamma(mcr: np.ndarray, beta: float, r_anchor: float) -> np.ndarray:
    """``β·(MCR − r_anchor)`` per record (float64; NaN where the MCR is NaN)."""
    if not (math.isfinite(beta) and math.isfinite(r_anchor)):
        raise ValueError(f"beta and r_anchor must be finite, got beta={beta}, r_anchor={r_anchor}")
    return beta * (np.asarray(mcr, dtype=np.float64) - r_anchor)


def normaliser(raw: np.ndarray, max_factor: float) -> float:
    """κ such that ``mean(min(κ·raw, max_factor)) = 1`` over the finite ``raw`` factors (all ≥ 0).

    The mean grows continuously with κ up to ``max_factor × (share of raw > 0)``; if that is below 1
    no κ exists and the scaling is infeasible (ValueError).
    """
    values = np.asarray(raw, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        raise ValueError("no finite steering-training MCR to normalise the factors on")
    if max_factor < 1:
        raise ValueError(f"max_factor must be at least 1 (the mean factor), got {max_factor}")
    reachable = max_factor * float(np.mean(values > 0))
    if reachable < 1 - 1e-12:
        raise ValueError(f"infeasible scaling: with max_factor {max_factor:g} the mean factor reaches only {reachable:.3f}")
    low, high = 0.0, max_factor / float(values[values > 0].min())
    for _ in range(NORMALISER_STEPS):
        middle = (low + high) / 2
        if np.minimum(middle * values, max_factor).mean() < 1:
            low = middle
        else:
            high = middle
    return high


@dataclass(frozen=True)
class Scaling:
    """One AMPS scaling: β and r_anchor (and the units they came from), the bound and the normaliser."""

    beta: float
    r_anchor: float
    beta_units: float
    anchor_quantile: float
    max_factor: float
    normaliser: float

    @property
    def name(self) -> str:
        """A label for files and tables, e.g. ``b-0.5_q0.75`` (β units and anchor quantile); ``b0`` for β = 0."""
        if self.beta == 0.0:
            return "b0"
        return f"b{self.beta_units:+g}_q{self.anchor_quantile:g}"

    def factors(self, mcr: np.ndarray) -> np.ndarray:
        """``min(κ·max(0, 1 + γ), max_factor)`` per record; a record without a finite MCR gets the mean factor 1."""
        values = np.asarray(mcr, dtype=np.float64)
        finite = np.isfinite(values)
        factors = np.ones(len(values))
        raw = np.maximum(0.0, 1.0 + gamma(values[finite], self.beta, self.r_anchor))
        factors[finite] = np.minimum(self.normaliser * raw, self.max_factor)
        return factors

    def targets(self, vectors: torch.Tensor, mcr: np.ndarray) -> torch.Tensor:
        """The module's targets ``c_i·v_i`` for vectors [prompts, hidden] and one MCR per prompt."""
        if vectors.dim() != 2 or len(vectors) != len(mcr):
            raise ValueError(f"need vectors [prompts, hidden] and one MCR per prompt, got {list(vectors.shape)} and {len(mcr)}")
        factors = torch.as_tensor(self.factors(mcr), dtype=vectors.dtype)
        return factors.unsqueeze(-1) * vectors


def finite_values(train_mcr: np.ndarray) -> np.ndarray:
    """The finite steering-training MCR values (at least two, or a ValueError)."""
    values = np.asarray(train_mcr, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        raise ValueError(f"need at least 2 finite steering-training MCR values to scale β, got {len(values)}")
    return values


def mcr_spread(train_mcr: np.ndarray) -> float:
    """The sample standard deviation of the finite steering-training MCR (the unit of β)."""
    return float(finite_values(train_mcr).std(ddof=1))


def _scaling(
    train_mcr: np.ndarray, beta: float, r_anchor: float, beta_units: float, anchor_quantile: float, max_factor: float
) -> Scaling:
    raw = np.maximum(0.0, 1.0 + gamma(finite_values(train_mcr), beta, r_anchor))
    return Scaling(beta, r_anchor, beta_units, anchor_quantile, max_factor, normaliser(raw, max_factor))


def from_units(train_mcr: np.ndarray, beta_units: float, anchor_quantile: float, max_factor: float) -> Scaling:
    """The scaling with ``β = beta_units / sd`` and ``r_anchor`` the ``anchor_quantile`` of the steering-training MCR.

    With no spread in the MCR (all equal) β is 0: γ could not tell records apart.
    """
    if not 0.0 <= anchor_quantile <= 1.0:
        raise ValueError(f"anchor quantile must lie in [0, 1], got {anchor_quantile}")
    values = finite_values(train_mcr)
    spread = float(values.std(ddof=1))
    # All equal (their sd may round to about 1e-17 rather than 0).
    if beta_units == 0.0 or np.ptp(values) == 0.0:
        return Scaling(0.0, 0.0, 0.0, 0.5, max_factor, 1.0)
    return _scaling(
        values, beta_units / spread, float(np.quantile(values, anchor_quantile)), beta_units, anchor_quantile, max_factor
    )


def from_values(train_mcr: np.ndarray, beta: float, r_anchor: float, max_factor: float) -> Scaling:
    """A fixed β and r_anchor (from the config), with their units on the steering-training MCR."""
    values = finite_values(train_mcr)
    if beta == 0.0:
        return Scaling(0.0, 0.0, 0.0, 0.5, max_factor, 1.0)
    return _scaling(
        values,
        float(beta),
        float(r_anchor),
        float(beta) * float(values.std(ddof=1)),
        float(np.mean(values <= r_anchor)),
        max_factor,
    )


def candidates(
    train_mcr: np.ndarray, signs: list[int], beta_units: list[float], anchor_quantiles: list[float], max_factor: float
) -> tuple[list[Scaling], list[str]]:
    """Every feasible scaling of the grid (each sign, |β| unit and anchor quantile), and why others were left out."""
    if any(unit <= 0 for unit in beta_units):
        raise ValueError(f"amps.beta_units must be positive (the sign comes from the data), got {beta_units}")
    feasible, skipped = [], []
    for sign in signs:
        for unit in sorted(beta_units):
            for quantile in sorted(anchor_quantiles):
                try:
                    feasible.append(from_units(train_mcr, sign * unit, quantile, max_factor))
                except ValueError as error:
                    skipped.append(f"β units {sign * unit:+g}, anchor quantile {quantile:g}: {error}")
    return feasible, skipped


def factor_summary(factors: np.ndarray, max_factor: float) -> dict[str, float]:
    """The distribution of factors: mean, sd, min, 10th/50th/90th percentiles, max, shares at 0 and at the bound."""
    values = np.asarray(factors, dtype=np.float64)
    p10, median, p90 = np.percentile(values, [10, 50, 90])
    return {
        "factor_mean": float(values.mean()),
        "factor_sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "factor_min": float(values.min()),
        "factor_p10": float(p10),
        "factor_median": float(median),
        "factor_p90": float(p90),
        "factor_max": float(values.max()),
        "factor_share_zero": float(np.mean(values == 0.0)),
        "factor_share_bound": float(np.mean(values >= max_factor - 1e-12)),
    }


@dataclass(frozen=True)
class SignTest:
    """The link between MCR and reaction strength: Spearman's ρ, its bootstrap interval, the sign it sets."""

    correlation: float
    low: float
    high: float
    records: int
    sign: int

    @property
    def significant(self) -> bool:
        return self.sign != 0


def sign_test(mcr: pd.Series, reaction: pd.Series, confidence: float, resamples: int, seed: int) -> SignTest:
    """β's sign: that of Spearman(MCR, reaction strength) where its bootstrap interval excludes 0, else 0.

    A positive correlation means high-MCR records react late (they tolerate strong steering), so γ
    must grow with MCR: β > 0; and conversely. Records whose MCR failed are left out; records that
    never react rank above every record that does (:func:`amps.statistics.spearman`).
    """
    mcr_values = mcr.to_numpy(dtype=np.float64)
    finite = np.isfinite(mcr_values)
    x, y = mcr_values[finite], reaction.to_numpy(dtype=np.float64)[finite]
    rho = statistics.spearman(x, y)
    low, high, _defined = statistics.bootstrap_interval(x, y, resamples, seed, confidence)
    excludes_zero = math.isfinite(low) and math.isfinite(high) and (low > 0 or high < 0)
    sign = (1 if rho > 0 else -1) if excludes_zero and math.isfinite(rho) else 0
    return SignTest(rho, low, high, int(finite.sum()), sign)


def choose(scores: pd.DataFrame, max_collapse: float) -> tuple[int, bool]:
    """The row (position) of the best point and whether it respects the collapse bound.

    ``scores`` has one row per candidate point, in preference order for ties, with ``shift``
    (record-level share following the target, minus unsteered) and ``collapse`` (S_other, minus
    unsteered). The best point has the largest shift among those with ``collapse <= max_collapse``;
    if none stays within the bound, the one with the least collapse.
    """
    if scores.empty:
        raise ValueError("no points to choose from")
    shift = scores["shift"].to_numpy(dtype=float)
    collapse = scores["collapse"].to_numpy(dtype=float)
    within = collapse <= max_collapse + 1e-12
    if within.any():
        indices = np.flatnonzero(within)
        # argmax returns the first of equal shifts: the earliest (preferred) point.
        return int(indices[np.argmax(shift[indices])]), True
    return int(np.argmin(collapse)), False
