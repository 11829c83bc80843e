"""The AMPS scaling target: γ_i = β·(MCR_i − r_anchor) and the target (1 + γ_i)·v_i.

A prompt's steering vector ``v_i`` (its record's two option orders each have their own) is scaled by
``max(0, 1 + γ_i)``, with γ_i from the record's MCR: the factor is kept at or above zero so that a
prompt is never steered the opposite way. With ``β = 0`` the target is ``v_i`` itself,
Learn-to-Steer's target.

β and r_anchor are either fixed in the config or chosen on the validation split. The choice is
made in units that do not depend on how concentrated a model's MCR is: ``r_anchor`` is a quantile
of the steering-training MCR and ``|β|`` a multiple of ``1 / sd`` of that MCR, so ``β·(MCR − r)``
has a comparable spread for every model. The sign of β comes from the data: the validation records'
sensitivity to steering (the smallest strength at which a record reacts, by following the target
modality in both option orders or by answering no option) is rank-correlated with their MCR, and
β takes the sign of that correlation, so that records the scan found sensitive get weaker steering.
With no measurable relation (correlation zero or undefined) β is 0 and AMPS reduces to
Learn-to-Steer.

Grid points are scored by their modality shift and collapse (see :func:`choose`): the point with
the largest shift whose collapse stays within the configured bound wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from amps import sensitivity

def mcr_column(estimator: str) -> str:
    """The MCR table's column that γ reads: the functional entropy (``entropy``) or the Fisher term (``fisher``)."""
    try:
        return sensitivity.ESTIMATORS[estimator]
    except KeyError:
        raise ValueError(f"unknown MCR estimator {estimator!r}; expected one of {sorted(sensitivity.ESTIMATORS)}") from None


def gamma(mcr: torch.Tensor, beta: float, r_anchor: float) -> torch.Tensor:
    """``β·(MCR − r_anchor)`` per record; every MCR must be finite."""
    mcr = torch.as_tensor(mcr, dtype=torch.float32)
    if not torch.isfinite(mcr).all():
        bad = int((~torch.isfinite(mcr)).sum())
        raise ValueError(f"{bad} of {len(mcr)} MCR values are not finite; drop or replace them before scaling")
    if not (math.isfinite(beta) and math.isfinite(r_anchor)):
        raise ValueError(f"beta and r_anchor must be finite, got beta={beta}, r_anchor={r_anchor}")
    return beta * (mcr - r_anchor)


def scale_factor(gammas: torch.Tensor) -> torch.Tensor:
    """``max(0, 1 + γ)``: the multiplier of each vector (never reversing its direction)."""
    return (1.0 + gammas).clamp(min=0.0)


def scaled_targets(vectors: torch.Tensor, mcr: torch.Tensor, beta: float, r_anchor: float) -> torch.Tensor:
    """The module's targets ``max(0, 1 + γ_i)·v_i`` for vectors [records, hidden] and MCR [records]."""
    if vectors.dim() != 2 or len(vectors) != len(mcr):
        raise ValueError(f"need vectors [records, hidden] and one MCR per record, got {list(vectors.shape)} and {len(mcr)}")
    return scale_factor(gamma(mcr, beta, r_anchor)).unsqueeze(-1) * vectors


@dataclass(frozen=True)
class ScalingChoice:
    """β and r_anchor, and the units they were chosen in (``beta_units`` × 1/sd, anchor quantile)."""

    beta: float
    r_anchor: float
    beta_units: float
    anchor_quantile: float


def mcr_statistics(train_mcr: np.ndarray) -> tuple[float, np.ndarray]:
    """The standard deviation of the finite steering-training MCR values, and those values."""
    values = np.asarray(train_mcr, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        raise ValueError(f"need at least 2 finite steering-training MCR values to scale β, got {len(values)}")
    return float(values.std(ddof=1)), values


def from_units(train_mcr: np.ndarray, beta_units: float, anchor_quantile: float) -> ScalingChoice:
    """β and r_anchor from their units on a model's steering-training MCR.

    With no spread in the MCR (all equal), β is 0: γ could not tell records apart.
    """
    if not 0.0 <= anchor_quantile <= 1.0:
        raise ValueError(f"anchor quantile must lie in [0, 1], got {anchor_quantile}")
    spread, values = mcr_statistics(train_mcr)
    beta = beta_units / spread if spread > 0 else 0.0
    return ScalingChoice(beta, float(np.quantile(values, anchor_quantile)), beta_units, anchor_quantile)


def from_values(train_mcr: np.ndarray, beta: float, r_anchor: float) -> ScalingChoice:
    """A fixed β and r_anchor (from the config), with their units on the steering-training MCR."""
    spread, values = mcr_statistics(train_mcr)
    return ScalingChoice(float(beta), float(r_anchor), float(beta) * spread, float(np.mean(values <= r_anchor)))


def reaction_strength(flip_strength: pd.Series, collapse_strength: pd.Series) -> pd.Series:
    """The smallest scanned strength at which a record reacts (flips or collapses); NaN if never."""
    return pd.concat([flip_strength, collapse_strength], axis=1).min(axis=1, skipna=True)


def sensitivity_correlation(mcr: pd.Series, reaction: pd.Series) -> float:
    """Spearman correlation of MCR with the reaction strength (NaN where it is undefined).

    Records whose MCR failed are left out; records that never react are ranked above every record
    that does (:func:`amps.sensitivity.spearman`).
    """
    mcr_values = mcr.to_numpy(dtype=np.float64)
    finite = np.isfinite(mcr_values)
    return sensitivity.spearman(mcr_values[finite], reaction.to_numpy(dtype=np.float64)[finite])


def beta_sign(correlation: float) -> int:
    """+1 when records with a higher MCR tolerate more steering, −1 when fewer, 0 with no relation.

    A positive correlation between MCR and the reaction strength means high-MCR records react late
    (they tolerate strong steering), so γ must grow with MCR: β > 0; and conversely.
    """
    if not math.isfinite(correlation) or correlation == 0.0:
        return 0
    return 1 if correlation > 0 else -1


def scaling_grid(train_mcr: np.ndarray, sign: int, beta_units: list[float], anchor_quantiles: list[float]) -> list[ScalingChoice]:
    """Candidate (β, r_anchor): β = 0 first, then each |β| unit with ``sign`` at each anchor quantile."""
    if any(unit <= 0 for unit in beta_units):
        raise ValueError(f"amps.beta_units must be positive (the sign comes from the data), got {beta_units}")
    candidates = [from_units(train_mcr, 0.0, 0.5)]
    if sign == 0:
        return candidates
    for unit in sorted(beta_units):
        for quantile in sorted(anchor_quantiles):
            candidates.append(from_units(train_mcr, sign * unit, quantile))
    return candidates


def choose(scores: pd.DataFrame, max_collapse: float) -> tuple[int, bool]:
    """The row (position) of the best grid point and whether it respects the collapse bound.

    ``scores`` has one row per candidate, in preference order for ties, with ``shift`` (record-level
    share following the target, minus unsteered) and ``collapse`` (S_other, minus unsteered). The
    best point has the largest shift among those with ``collapse <= max_collapse``; if none stays
    within the bound, the one with the least collapse.
    """
    if scores.empty:
        raise ValueError("no grid points to choose from")
    shift = scores["shift"].to_numpy(dtype=float)
    collapse = scores["collapse"].to_numpy(dtype=float)
    within = collapse <= max_collapse + 1e-12
    if within.any():
        candidates = np.flatnonzero(within)
        # argmax returns the first of equal shifts: the earliest (preferred) grid point.
        return int(candidates[np.argmax(shift[candidates])]), True
    return int(np.argmin(collapse)), False
