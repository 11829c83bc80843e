"""How the MCR is estimated: the estimator's settings, torch-free (the MCR shards and the ablations read them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping


@dataclass(frozen=True)
class EstimatorSettings:
    """The config's ``mcr`` estimator keys and the run seed; how many samples go in one pass (``mcr.max_batch``,
    a memory budget) is not among them: it changes no estimate beyond float rounding."""

    sigma: float
    samples: int
    answer: str
    fisher: bool
    #: The text modality's positions: the text ``context`` (the evidence that conflicts with the image)
    #: or the whole user ``prompt`` (context, question, options and answer line).
    text: str
    seed: int
    #: Names an independent set of noise draws: empty for the main run (whose draws it leaves as they
    #: were), any other name for a re-estimate that must not reuse the main run's draws.
    stream: str = ""

    READS: ClassVar[tuple[str, ...]] = ("mcr.sigma", "mcr.samples", "mcr.answer", "mcr.fisher", "mcr.text", "seed")

    @classmethod
    def from_config(cls, config: Mapping) -> EstimatorSettings:
        mcr = config["mcr"]
        return cls(mcr["sigma"], mcr["samples"], mcr["answer"], mcr["fisher"], mcr["text"], config["seed"])
