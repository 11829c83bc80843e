"""How the MCR is estimated: the estimator's settings, torch-free (the MCR shards and the ablations read them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

#: ``mcr.max_batch``'s default: perturbed cache copies per batched one-token forward at most (a memory budget).
MAX_BATCH = 64


@dataclass(frozen=True)
class EstimatorSettings:
    """The config's ``mcr`` estimator keys and the run seed, with the schema's defaults; how many samples go in one
    pass (``mcr.max_batch``, a memory budget) is not among them: it changes no estimate beyond float rounding."""

    #: The noise scale, relative to the per-channel spread of the modality's cached keys and values.
    sigma: float = 0.25
    #: Monte Carlo samples per option order and modality.
    samples: int = 32
    #: What ``f`` scores: the model's own ``clean`` answer, or the ``vision``- or ``text``-consistent option.
    answer: str = "clean"
    #: Whether the log-Sobolev Fisher term is estimated too (one backward pass per batch of samples).
    fisher: bool = True
    #: The text modality's positions: the text ``context`` (the evidence that conflicts with the image)
    #: or the whole user ``prompt`` (context, question, options and answer line).
    text: str = "context"
    #: The run's seed (the config has no default: every run names its own).
    seed: int = 0
    #: Names an independent set of noise draws: empty for the main run (whose draws it leaves as they
    #: were), any other name for a re-estimate that must not reuse the main run's draws.
    stream: str = ""

    READS: ClassVar[tuple[str, ...]] = ("mcr.sigma", "mcr.samples", "mcr.answer", "mcr.fisher", "mcr.text", "seed")

    @classmethod
    def from_config(cls, config: Mapping) -> EstimatorSettings:
        mcr = config["mcr"]
        return cls(mcr["sigma"], mcr["samples"], mcr["answer"], mcr["fisher"], mcr["text"], config["seed"])
