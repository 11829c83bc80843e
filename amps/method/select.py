"""Each method at its own best: strengths, AMPS's sign of β, β and r_anchor, chosen on the validation split.

Every method is scanned over one strength grid (``amps.strengths``, one unit for all: see
:mod:`amps.method.vectors`) with its own steering (the mean vector, the oracle prompt vectors, each trained
Learn-to-Steer and AMPS module, AMPS-online's factor-scaled mean vector), and one criterion picks
its strength: the largest record-level shift with collapse within ``amps.max_collapse``
(:func:`amps.method.scaling.choose`). A scan stops once two consecutive strengths exceed the bound: collapse
only grows beyond.

AMPS's scaling is chosen the same way, on the modules trained for each candidate:

1. the sign of β: Spearman's correlation of the validation MCR with each record's reaction strength
   under Learn-to-Steer (first seed), kept only if its bootstrap interval excludes 0
   (:func:`amps.method.scaling.sign_test`); for AMPS-online, under mean steering;
2. the candidates of that sign (|β| units × anchor quantiles, each module's factors bounded and
   normalised), each module of the first seed scanned over the grid; β = 0 (Learn-to-Steer itself)
   stays among them, so AMPS's validation choice is never worse than Learn-to-Steer's;
3. the chosen candidate's other seeds, each with its own strength from its own scan.

``amps.beta`` / ``amps.r_anchor`` fix the scaling instead. Nothing is chosen on the test split.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from amps.core.io import write_json, write_table
from amps.data.benchmark import Benchmark
from amps.mcr.table import load_mcr, mcr_of
from amps.method import scaling
from amps.method.fit import scaling_candidates
from amps.method.methods import VectorSteering, module_steering
from amps.method.steering_module import module_name
from amps.method.vectors import record_vectors
from amps.metrics import reaction_table, shift_and_collapse
from amps.models.answer_check import check_option_tokens
from amps.models.asking import QuestionBatches, answer, evaluation_questions
from amps.models.interface import MultimodalModel
from amps.models.loading import load_model
from amps.statistics import group_seed
from amps.steering.activations import Activations
from amps.vocabulary import DIRECTIONS

if TYPE_CHECKING:
    from amps.method.steps import SelectAmps

log = logging.getLogger(__name__)


@dataclass
class Scan:
    """One method's validation scan: (strength, shift, collapse) per scanned strength, and every answer."""

    points: pd.DataFrame
    answers: pd.DataFrame


@dataclass
class Scanner:
    """What the scans share: the model, the encoded validation conflicts, their unsteered answers, the grid."""

    model: MultimodalModel
    encoded: QuestionBatches
    unsteered: pd.DataFrame
    grid: list[float]
    max_collapse: float
    max_new_tokens: int

    def answers(self, steering, strength: float, desc: str) -> pd.DataFrame:
        """The validation conflicts answered under ``steering`` at ``strength``."""
        return answer(self.model, self.encoded, self.max_new_tokens, steering.context(strength), desc=f"{desc} s={strength:g}")

    def scan(self, steering, target: str, desc: str) -> Scan:
        """Answers at each strength of the grid, weakest first, until two consecutive ones exceed the collapse bound."""
        rows, frames, beyond = [], [self.unsteered.assign(strength=0.0)], 0
        for strength in self.grid:
            answers = self.answers(steering, strength, desc)
            shift, collapse = shift_and_collapse(answers, self.unsteered, target)
            rows.append({"strength": strength, "shift": shift, "collapse": collapse})
            frames.append(answers.assign(strength=strength))
            beyond = beyond + 1 if collapse > self.max_collapse + 1e-12 else 0
            if beyond == 2:
                break
        return Scan(pd.DataFrame(rows), pd.concat(frames, ignore_index=True))


def pick(points: pd.DataFrame, max_collapse: float, grid: list[float], seed: int) -> dict:
    """The chosen point of a scan (or of several candidates' scans, rows in preference order)."""
    best, within = scaling.choose(points.reset_index(drop=True), max_collapse)
    row = points.iloc[best]
    return {
        "seed": seed,
        "strength": float(row["strength"]),
        "within_bound": within,
        "shift": float(row["shift"]),
        "collapse": float(row["collapse"]),
        "at_grid_edge": float(row["strength"]) == max(grid),
        "row": best,
    }


def sign_record(test: scaling.SignTest, source: str) -> dict:
    """The sign test as JSON (no NaN in JSON: an undefined number is null)."""
    number = lambda value: value if math.isfinite(value) else None  # noqa: E731
    return {
        "correlation": number(test.correlation),
        "low": number(test.low),
        "high": number(test.high),
        "records": test.records,
        "sign": test.sign,
        "significant": test.significant,
        "source": source,
    }


def scaling_record(chosen: scaling.Scaling, train_mcr: np.ndarray) -> dict:
    """A scaling and its factors' distribution over the steering-training records, as JSON."""
    factors = chosen.factors(train_mcr[np.isfinite(train_mcr)])
    return {"name": chosen.name, **asdict(chosen), **scaling.factor_summary(factors, chosen.max_factor)}


def scan_rows(scan: Scan, method: str, seed: int, candidate: str) -> pd.DataFrame:
    return scan.points.assign(method=method, seed=seed, candidate=candidate)


def select_direction(
    settings: SelectAmps,
    scanner: Scanner,
    direction: str,
    vectors,
    validation_mcr: pd.Series,
    train_mcr: np.ndarray,
    steerers: str,
    model_name: str,
) -> tuple[dict, list[pd.DataFrame]]:
    """Every method's validation choice in ``direction`` (see the module docstring), and every scanned point."""
    sign, target = DIRECTIONS[direction]
    model, positions, grid, scale = scanner.model, settings.positions, scanner.grid, vectors.prompt_scale
    bound = scanner.max_collapse
    choice: dict = {}
    rows: list[pd.DataFrame] = []

    def run(steering, method: str, seed: int = 0, candidate: str = "") -> Scan:
        scan = scanner.scan(steering, target, f"validation {direction} {method} {candidate} seed {seed}".replace("  ", " "))
        rows.append(scan_rows(scan, method, seed, candidate))
        return scan

    mean_vectors = sign * vectors.base("mean")
    mean_scan = run(VectorSteering(model, vectors.layer, mean_vectors, positions), "mean")
    choice["mean"] = {"seeds": [pick(mean_scan.points, bound, grid, 0)]}
    p2s_scan = run(VectorSteering(model, vectors.layer, sign * vectors.base(settings.grid.vector), positions), "p2s")
    choice["p2s"] = {"seeds": [pick(p2s_scan.points, bound, grid, 0)]}
    l2s_scans = [
        run(module_steering(model, steerers, module_name("l2s", direction, seed), positions, scale), "l2s", seed)
        for seed in range(settings.seeds)
    ]
    choice["l2s"] = {"seeds": [pick(scan.points, bound, grid, seed) for seed, scan in enumerate(l2s_scans)]}

    seed = group_seed(settings.seed, model_name, direction)
    for method, base_scan in (("amps", l2s_scans[0]), ("amps_online", mean_scan)):
        reactions = reaction_table(base_scan.answers, target)
        test = scaling.sign_test(
            validation_mcr.reindex(reactions["record_id"]).reset_index(drop=True),
            reactions["reaction_strength"],
            settings.sign_confidence,
            settings.sign_bootstrap,
            seed,
        )
        identity = scaling.from_units(train_mcr, 0.0, 0.5, settings.grid.max_factor)
        signed, skipped = scaling_candidates(settings.grid, train_mcr, [test.sign] if test.sign else [])
        # A fixed β keeps to its own scaling; a chosen one competes with β = 0 (the unscaled method).
        candidates = (signed or [identity]) if settings.grid.fixed else [identity, *signed]
        scans = []
        for candidate in candidates:
            if candidate.beta == 0.0:
                scans.append(base_scan)  # β = 0 is the unscaled method itself
                continue
            if method == "amps":
                steering = module_steering(model, steerers, module_name("amps", direction, 0, candidate.name), positions, scale)
            else:
                steering = VectorSteering(
                    model, vectors.layer, mean_vectors, positions, candidate.factors(validation_mcr.to_numpy())
                )
            scans.append(run(steering, method, 0, candidate.name))
        offsets = np.cumsum([0] + [len(scan.points) for scan in scans])
        best = pick(pd.concat([scan.points for scan in scans], ignore_index=True), bound, grid, 0)
        index = int(np.searchsorted(offsets, best.pop("row"), side="right") - 1)
        chosen = candidates[index]
        seeds = [best]
        if method == "amps":
            for other in range(1, settings.seeds):
                if chosen.beta == 0.0:
                    seeds.append(dict(choice["l2s"]["seeds"][other]))
                    continue
                steering = module_steering(model, steerers, module_name("amps", direction, other, chosen.name), positions, scale)
                seeds.append(pick(run(steering, method, other, chosen.name).points, bound, grid, other))
        for entry in seeds:
            entry.pop("row", None)
        choice[method] = {
            "scaling": scaling_record(chosen, train_mcr),
            "sign": sign_record(test, "l2s" if method == "amps" else "mean"),
            "skipped": skipped,
            "seeds": seeds,
        }
        log.info(
            "%s %s %s: %s, sign %+d (rho %.3f [%.3f, %.3f]), strength %s",
            model_name,
            direction,
            method,
            chosen.name,
            test.sign,
            test.correlation,
            test.low,
            test.high,
            [entry["strength"] for entry in seeds],
        )
    for method in ("mean", "p2s", "l2s"):
        for entry in choice[method]["seeds"]:
            entry.pop("row", None)
    return choice, rows


def select_all(
    settings: SelectAmps, benchmark_dir: str, model: str, activations: str, mcr: str, steerers: str, output: str, scan: str
) -> None:
    """Every method's validation choice in both directions (JSON), and every scanned point (CSV)."""
    torch.set_num_threads(settings.threads)
    layer = settings.layer
    benchmark = Benchmark(benchmark_dir)
    validation = benchmark.split("validation")
    record_ids = validation["record_id"].tolist()
    mcr_table = load_mcr(mcr, settings.grid.estimator)
    train_mcr = mcr_table.reindex(benchmark.split("steer_train")["record_id"]).to_numpy(dtype=np.float64)
    vectors = record_vectors(Activations.load(activations), layer, record_ids)
    loaded = load_model(model, **settings.model.load_options)
    encoded = QuestionBatches(
        loaded, benchmark, validation, evaluation_questions(validation, "conflict"), settings.batch_size, keep=True
    )
    max_new_tokens = settings.max_new_tokens
    check_option_tokens(loaded, encoded, max_new_tokens, f"validation {settings.model_name}")
    unsteered = answer(loaded, encoded, max_new_tokens, desc="validation unsteered")
    scanner = Scanner(loaded, encoded, unsteered, sorted(settings.strengths), settings.max_collapse, max_new_tokens)
    choices: dict = {
        "model": settings.model_name,
        "layer": layer,
        "estimator": settings.grid.estimator,
        "max_collapse": settings.max_collapse,
        "strengths": scanner.grid,
        "train_mcr_sd": scaling.mcr_spread(train_mcr),
        "reference_norm": vectors.reference_norm,
        "typical_norm": vectors.typical_norm,
        # Where the scans added their vectors: a module loaded from this run (amps.load_steering_module) steers there.
        "positions": settings.positions,
    }
    tables = []
    for direction in DIRECTIONS:
        choices[direction], rows = select_direction(
            settings, scanner, direction, vectors, mcr_of(mcr_table, record_ids), train_mcr, steerers, settings.model_name
        )
        tables += [frame.assign(direction=direction) for frame in rows]
    write_json(output, choices)
    scanned = pd.concat(tables, ignore_index=True)
    scanned.insert(0, "model", settings.model_name)
    write_table(scan, scanned[["model", "direction", "method", "seed", "candidate", "strength", "shift", "collapse"]])
