"""A batch of encoded (image, prompt) pairs: the model's inputs and where the image and prompt tokens are."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import torch


@dataclass
class Batch:
    """Model inputs for a batch of (image, prompt) pairs, left padded.

    ``inputs`` are the keyword arguments of the model's forward; ``image_mask`` marks the image
    token positions and ``text_mask`` the tokens of the user's prompt (context, question, options,
    instructions), excluding the chat template's fixed tokens and padding (``None`` when the batch
    was encoded without locating the prompt, as for training); ``context_mask`` the tokens of the
    text context alone (``None`` unless contexts were given; all false in a row without one).
    ``labels`` is set when targets were given (``-100`` everywhere but the target tokens).
    :meth:`MultimodalModel.encode <amps.models.interface.MultimodalModel.encode>` builds one on the host; a
    forward or a generation moves it to the model's device (:meth:`to`).

    Example::

        batch = model.encode(images, prompts)           # on the CPU, image tensors in the model's dtype
        batch.select([0, 2]).to("cuda").input_ids       # rows 0 and 2 on the GPU
    """

    inputs: dict[str, torch.Tensor]
    image_mask: torch.Tensor
    text_mask: torch.Tensor | None
    labels: torch.Tensor | None = None
    context_mask: torch.Tensor | None = None

    @property
    def input_ids(self) -> torch.Tensor:
        return self.inputs["input_ids"]

    @property
    def attention_mask(self) -> torch.Tensor:
        return self.inputs["attention_mask"]

    @property
    def rows(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: torch.device | str) -> Batch:
        """The batch with every tensor on ``device`` (tensors already there are not copied)."""
        moved = {field.name: _map_tensors(getattr(self, field.name), lambda tensor: tensor.to(device)) for field in fields(self)}
        return Batch(**moved)

    def select(self, rows: Sequence[int]) -> Batch:
        """The batch of ``rows`` alone, at the batch's padded width (each row's tokens and positions unchanged).

        Qwen-family processors concatenate the images' patches into one ``pixel_values``; each row's one image
        is its slice of ``image_grid_thw``'s patch count.
        """
        index = torch.as_tensor(list(rows), dtype=torch.long)
        grid = self.inputs.get("image_grid_thw")
        if grid is not None and grid.shape[0] != self.rows:
            raise ValueError(f"a batch of {self.rows} rows has {grid.shape[0]} images: rows are taken with one image each")

        def take(key: str | None, tensor: torch.Tensor) -> torch.Tensor:
            if key == "pixel_values" and grid is not None:
                patches = tensor.split(grid.prod(dim=-1).tolist())
                return torch.cat([patches[row] for row in index.tolist()])
            return tensor[index.to(tensor.device)]

        inputs = {key: take(key, value) for key, value in self.inputs.items()}
        masks = {
            field.name: _map_tensors(getattr(self, field.name), lambda tensor: take(None, tensor))
            for field in fields(self)
            if field.name != "inputs"
        }
        return Batch(inputs, **masks)


def _map_tensors(value, function):
    """``function`` applied to a tensor, or to each tensor of a mapping; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {key: function(tensor) for key, tensor in value.items()}
    return function(value)
