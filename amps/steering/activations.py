"""Contrastive activations: hidden states under the image and text instructions, and their difference.

For every record of the benchmark (all splits) and both option orders, the residual stream that a
steering layer outputs is read at the last prompt token for three prompts: the plain prompt (no
instruction; what input-dependent steering methods read), the prompt with the image instruction
and the prompt with the text instruction. A record's difference vector is
``image-instruction state - text-instruction state``, averaged over its two option orders: the
answer letter flips between the orders, so its part of the difference cancels and what is left
points toward following the image. The mean vector is the mean of the steering-training records'
differences.

The file ``{model}.safetensors`` holds, for each layer ``L`` of the model's steering layers:

- ``layer{L}.plain`` [records, hidden]: plain prompt state, mean of the two option orders;
- ``layer{L}.plain.vision_first`` / ``layer{L}.plain.text_first`` [records, hidden]: per order;
- ``layer{L}.diff`` [records, hidden]: per-record difference (toward vision), mean of the orders;
- ``layer{L}.diff.vision_first`` / ``layer{L}.diff.text_first`` [records, hidden]: per order;
- ``layer{L}.mean_diff`` [hidden]: mean of ``diff`` over the steering-training records;
- ``layer{L}.mean_norm`` []: mean norm of the per-order plain states over the steering-training
  records, the unit of the steering strength α (see :mod:`amps.steering.hook`).

Rows follow ``record_ids`` of the JSON index beside it, which also lists each row's split and task.
:func:`load_mean_vector` gives a run's mean vector as a :class:`~amps.steering.hook.SteeringVector`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from amps.core.io import read_json, read_tensors
from amps.core.progress import progress
from amps.data.benchmark import Benchmark
from amps.models.asking import Question, QuestionBatches, make_question
from amps.models.batch import Batch
from amps.models.interface import MultimodalModel
from amps.steering.hook import SteeringVector
from amps.vocabulary import CONTRASTIVE_CONDITIONS, DIRECTIONS, ORDERS, SPLITS


def tensor_name(layer: int, kind: str) -> str:
    """Name of a tensor in the activations file, e.g. ``layer1.diff``."""
    return f"layer{layer}.{kind}"


@torch.no_grad()
def last_token_states(model: MultimodalModel, batch: Batch, layers: list[int]) -> dict[int, torch.Tensor]:
    """The output of each decoder layer in ``layers`` at the last position (batches are left padded)."""
    captured: dict[int, torch.Tensor] = {}

    def capture(layer: int):
        def hook(_module, _args, output):
            # A copy: on a float32 CPU model .float().cpu() would return a view that keeps the whole output alive.
            captured[layer] = output[:, -1, :].to(device="cpu", dtype=torch.float32, copy=True)

        return hook

    handles = [model.decoder_layers[layer].register_forward_hook(capture(layer)) for layer in layers]
    try:
        # Only the hidden states are wanted: keep the LM head to the last position.
        model.forward(batch, logits_to_keep=1)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def contrastive_questions(records: pd.DataFrame) -> list[Question]:
    """Every record under each of :data:`CONTRASTIVE_CONDITIONS`, in both option orders."""
    return [
        make_question(record, index, condition, order)
        for index, record in records.iterrows()
        for condition in CONTRASTIVE_CONDITIONS
        for order in ORDERS
    ]


def collect_states(
    model: MultimodalModel,
    benchmark: Benchmark,
    records: pd.DataFrame,
    layers: list[int],
    batch_size: int,
    desc: str = "activations",
) -> dict[tuple[int, str, str], torch.Tensor]:
    """Last-token states keyed by (layer, condition, order), each [records, hidden], rows as ``records``."""
    states = {
        (layer, condition, order): torch.zeros(len(records), model.hidden_size)
        for layer in layers
        for condition in CONTRASTIVE_CONDITIONS
        for order in ORDERS
    }
    batches = QuestionBatches(model, benchmark, records, contrastive_questions(records), batch_size, keep=False)
    with progress(total=batches.size, desc=desc, unit="prompt") as bar:
        for chunk, batch in batches:
            captured = last_token_states(model, batch, layers)
            for row, question in enumerate(chunk):
                for layer in layers:
                    if not torch.isfinite(captured[layer][row]).all():
                        raise FloatingPointError(
                            f"non-finite hidden state at layer {layer} for record "
                            f"{records.iloc[question.record_index]['record_id']!r} "
                            f"({question.condition} instruction, {question.order})"
                        )
                    states[(layer, question.condition, question.order)][question.record_index] = captured[layer][row]
            bar.update(len(chunk))
    return states


def contrastive_tensors(
    states: dict[tuple[int, str, str], torch.Tensor], layers: list[int], mean_rows: torch.Tensor
) -> tuple[dict[str, torch.Tensor], dict[int, dict[str, float]]]:
    """The file's tensors (see the module docstring) and per-layer statistics.

    ``mean_rows`` selects the records (steering-training split) that define the mean vector and the
    norm unit.
    """
    tensors: dict[str, torch.Tensor] = {}
    stats: dict[int, dict[str, float]] = {}
    for layer in layers:
        plain = {order: states[(layer, "none", order)] for order in ORDERS}
        diff = {order: states[(layer, "image", order)] - states[(layer, "text", order)] for order in ORDERS}
        mean_over_orders_plain = torch.stack(list(plain.values())).mean(0)
        mean_over_orders_diff = torch.stack(list(diff.values())).mean(0)
        mean_diff = mean_over_orders_diff[mean_rows].mean(0)
        mean_norm = torch.cat([plain[order][mean_rows] for order in ORDERS]).norm(dim=-1).mean()
        tensors[tensor_name(layer, "plain")] = mean_over_orders_plain
        tensors[tensor_name(layer, "diff")] = mean_over_orders_diff
        for order in ORDERS:
            tensors[tensor_name(layer, f"plain.{order}")] = plain[order]
            tensors[tensor_name(layer, f"diff.{order}")] = diff[order]
        tensors[tensor_name(layer, "mean_diff")] = mean_diff
        tensors[tensor_name(layer, "mean_norm")] = mean_norm
        record_diff_norms = mean_over_orders_diff[mean_rows].norm(dim=-1)
        stats[layer] = {
            "mean_norm": float(mean_norm),
            "mean_diff_norm": float(mean_diff.norm()),
            "mean_record_diff_norm": float(record_diff_norms.mean()),
            # How much the records' differences share one direction (1: identical; ~0: unrelated).
            "mean_diff_coherence": float(mean_diff.norm() / record_diff_norms.mean()),
        }
    return tensors, stats


@dataclass
class Activations:
    """A loaded activations file and its index."""

    tensors: dict[str, torch.Tensor]
    index: dict

    @classmethod
    def load(cls, path: str | Path) -> "Activations":
        """Read ``{model}.safetensors`` and the ``{model}.json`` index beside it."""
        tensor_path = Path(path)
        index_path = tensor_path.with_suffix(".json")
        for required in (tensor_path, index_path):
            if not required.is_file():
                raise FileNotFoundError(f"{required} does not exist: run the collect-activations step first")
        return cls(read_tensors(tensor_path), read_json(index_path))

    @property
    def record_ids(self) -> list[str]:
        return self.index["record_ids"]

    @property
    def steering_layer(self) -> int:
        return self.index["steering_layer"]

    def get(self, kind: str, layer: int | None = None) -> torch.Tensor:
        """A tensor by kind (``plain``, ``diff``, ``mean_diff``, ...) at ``layer`` (default: the steering layer)."""
        layer = self.steering_layer if layer is None else layer
        name = tensor_name(layer, kind)
        if name not in self.tensors:
            raise KeyError(f"{name} is not in the activations file (layers {self.index['layers']})")
        return self.tensors[name]

    def rows(self, record_ids: list[str]) -> torch.Tensor:
        """Row indices of the given records, in the given order."""
        position = {record_id: row for row, record_id in enumerate(self.record_ids)}
        missing = [record_id for record_id in record_ids if record_id not in position]
        if missing:
            raise KeyError(f"{len(missing)} records have no activations, e.g. {missing[0]!r}")
        return torch.tensor([position[record_id] for record_id in record_ids], dtype=torch.long)

    def split_rows(self, split: str) -> torch.Tensor:
        """Row indices of one split's records."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return torch.tensor([row for row, name in enumerate(self.index["splits"]) if name == split], dtype=torch.long)


def mean_direction(mean_diff: torch.Tensor, reference_norm: float) -> torch.Tensor:
    """The mean vector at strength 1: the steering-training records' mean difference, as long as the strength
    unit (the mean hidden-state norm)."""
    return mean_diff / mean_diff.norm().clamp(min=1e-12) * reference_norm


def load_mean_vector(
    activations: str | Path, direction: str = "to_vision", layer: int | None = None, positions: str = "all"
) -> SteeringVector:
    """The mean steering vector of a pipeline run's activations file (``results/<run>/activations/<model>.safetensors``).

    At strength 1 it is as long as the mean hidden-state norm at ``layer`` (the model's steering layer unless
    given), and points toward following the image (``to_vision``) or the text (``to_text``): the vector of
    the pipeline's mean steering, whose validation-chosen strength is in ``amps/<model>/selection.json``.

    Example::

        vector = amps.load_mean_vector("results/offline-default/activations/toy-s.safetensors", "to_text")
        with vector.apply(model.model, strength=0.5):
            output = model.model.generate(**inputs, max_new_tokens=8)
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown steering direction {direction!r}; expected one of {list(DIRECTIONS)}")
    stored = Activations.load(activations)
    layer = stored.steering_layer if layer is None else layer
    vector = DIRECTIONS[direction][0] * mean_direction(stored.get("mean_diff", layer), float(stored.get("mean_norm", layer)))
    return SteeringVector(vector, layer, positions)
