"""Rank statistics: Spearman's correlation with scores "beyond the grid" (NaN) ranked above every finite
one, its percentile bootstrap interval over records, and stable per-group seeds."""

from __future__ import annotations

import hashlib

import numpy as np

INTERVAL = 0.95
#: Fewer records than this give no correlation (NaN).
MIN_RECORDS = 3


def _ranks(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Ranks along ``axis``, ties averaged (scipy's ``rankdata``)."""
    # Imported here: scipy.stats costs over a second at start-up, paid by every model job that imports amps.
    from scipy.stats import rankdata

    return rankdata(values, axis=axis)


def beyond_grid_ranks(scores: np.ndarray) -> np.ndarray:
    """Ranks along the last axis with NaN ("beyond the grid") above every finite score; ties share a mean rank."""
    return _ranks(np.where(np.isnan(scores), np.inf, scores), axis=-1)


def rank_correlation(x_ranks: np.ndarray, y_ranks: np.ndarray) -> np.ndarray:
    """Pearson correlation of ranks along the last axis (Spearman's rho); NaN where either side is constant."""
    x = x_ranks - x_ranks.mean(axis=-1, keepdims=True)
    y = y_ranks - y_ranks.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((x * x).sum(axis=-1) * (y * y).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (x * y).sum(axis=-1) / np.where(denominator > 0, denominator, 1.0), np.nan)


def spearman(mcr: np.ndarray, scores: np.ndarray) -> float:
    """Spearman's rho between MCR values (finite) and sensitivity scores (NaN = beyond the grid)."""
    if len(mcr) < MIN_RECORDS:
        return float("nan")
    return float(rank_correlation(_ranks(mcr), beyond_grid_ranks(scores)))


def bootstrap_interval(
    mcr: np.ndarray, scores: np.ndarray, resamples: int, seed: int, confidence: float = INTERVAL
) -> tuple[float, float, int]:
    """Percentile bootstrap interval (``confidence``) of Spearman's rho over records, and how many resamples defined it.

    A resample whose MCR or scores are all tied has no correlation and is left out (counted).
    """
    if len(mcr) < MIN_RECORDS:
        return float("nan"), float("nan"), 0
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(mcr), size=(resamples, len(mcr)))
    rhos = rank_correlation(_ranks(mcr[picks], axis=-1), beyond_grid_ranks(scores[picks]))
    defined = rhos[np.isfinite(rhos)]
    if len(defined) == 0:
        return float("nan"), float("nan"), 0
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(defined, [tail, 100 - tail])
    return float(low), float(high), int(len(defined))


def group_seed(seed: int, *keys: str) -> int:
    """A stable seed for one group's bootstrap (independent of the order groups are computed in)."""
    digest = hashlib.blake2b("|".join([str(seed), *keys]).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
