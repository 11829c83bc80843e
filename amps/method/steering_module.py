"""A trained Learn-to-Steer or AMPS module steering a model while it generates, adaptively.

:class:`SteeringModule` is a trained module (:mod:`amps.method.steerer`) with what applying it needs: its
strength unit and, for a module of a pipeline run, the strength and positions that run chose.
:meth:`SteeringModule.apply` steers every forward pass inside its ``with`` block, so a plain
``model.generate(**inputs)`` on the user's own processor output is steered input by input:
:func:`learned_steering` reads each row's hidden state at the module's input layer, at the last prompt
position, during generation's prefill, and adds the module's prediction at the steering layer (the same or
a later layer) in that very pass and, for positions ``all``/``generated``, in every generation step after
it. No extra forward pass, no Monte Carlo. The rows must be padded on the left (as generation needs):
right padding is refused, since the last position would then be padding.

:func:`load_steering_module` loads a module of a run as the pipeline applied it; the pipeline's validation
scans, steered evaluation and ablations apply their modules through the same class.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager, Iterator

import torch

from amps.core.io import read_json
from amps.method.steerer import SteererConfig, load_steerer
from amps.models.interface import MultimodalModel, decoder_layers, hidden_size
from amps.steering.hook import SteerableModel, add_at_positions, check_steering_args
from amps.vocabulary import DIRECTIONS, LEARNED


@contextlib.contextmanager
def learned_steering(
    model: SteerableModel,
    module: torch.nn.Module,
    input_layer: int,
    steer_layer: int,
    strength: float = 1.0,
    positions: str = "all",
) -> Iterator[None]:
    """Steer with ``strength × module(h)`` inside the block, ``h`` read in the same forward pass.

    During the prefill (a pass over more than one position) the input layer's output at the last
    prompt position is taken for every row and the module predicts that row's vector; the steering
    layer adds it at ``positions`` (as :func:`amps.steering.hook.steer` does) in that pass and, for
    ``all``/``generated``, in every generation step after it. ``module`` is any map from
    [batch, hidden] states to [batch, hidden] vectors; ``model`` an amps model or the transformers model.
    A right-padded batch is an error. The hooks are removed on exit, also on error.
    """
    check_steering_args(model, steer_layer, torch.zeros(hidden_size(model)), positions)
    if not 0 <= input_layer <= steer_layer:
        raise ValueError(f"input layer {input_layer} must lie between 0 and the steering layer {steer_layer}")
    layers = decoder_layers(model)
    network = model.model if isinstance(model, MultimodalModel) else model
    weight = next(layers[steer_layer].parameters())
    module = module.to(weight.device)
    predicted: dict[str, torch.Tensor] = {}

    def refuse_right_padding(_module, _args, kwargs):
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.dim() == 2 and not bool(mask[:, -1].all()):
            raise ValueError(
                "the batch is padded on the right, so a row's last position is padding, not its prompt's last token: "
                "pad on the left (processor.tokenizer.padding_side = 'left')"
            )

    def read_state(_module, _args, output):
        if output.shape[1] > 1:
            with torch.no_grad():
                vectors = strength * module(output[:, -1, :].float())
            predicted["delta"] = vectors.to(weight.dtype).unsqueeze(1)

    def add_vector(_module, _args, output):
        if "delta" not in predicted:
            raise RuntimeError("the steering layer ran before the module read the prompt's state")
        return add_at_positions(output, predicted["delta"], positions)

    handles = [network.register_forward_pre_hook(refuse_right_padding, with_kwargs=True)]
    # The reading hook is registered first: on a shared layer it sees the output before steering.
    handles.append(layers[input_layer].register_forward_hook(read_state))
    handles.append(layers[steer_layer].register_forward_hook(add_vector))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True, eq=False)
class SteeringModule:
    """A trained steering module, ready to steer a model adaptively: ``with module.apply(model): model.generate(...)``.

    ``module`` maps the prompt's state at ``config.input_layer`` to the vector added at ``config.steer_layer``;
    ``scale`` gives a typical prediction the strength unit's length (the mean hidden-state norm), so that
    ``strength`` means what it means for every other method; ``strength`` is what :meth:`apply` uses unless
    told otherwise (a loaded module: the strength its run chose on validation); ``positions`` says where the
    vector is added (:data:`amps.vocabulary.POSITIONS`).

    Example::

        module = amps.load_steering_module("results/offline-default/amps/toy-s", "amps", "to_vision")
        inputs = processor(text=texts, images=images, padding=True, return_tensors="pt")
        with module.apply(model):
            output = model.generate(**inputs, max_new_tokens=8)
    """

    module: torch.nn.Module
    config: SteererConfig
    scale: float
    positions: str = "all"
    strength: float = 1.0

    def apply(self, model: SteerableModel, strength: float | None = None) -> ContextManager[None]:
        """Steer ``model`` (an amps model or the transformers model) inside the block, at ``strength`` (default:
        the module's own); the hooks go on exit, also on error."""
        chosen = self.strength if strength is None else strength
        return learned_steering(
            model, self.module, self.config.input_layer, self.config.steer_layer, chosen * self.scale, self.positions
        )


def module_name(method: str, direction: str, seed_index: int, scaling_name: str = "b0") -> str:
    """File stem of a trained module: ``l2s-<direction>-seed<k>``, ``amps-<direction>-<scaling>-seed<k>``.

    AMPS with β = 0 (scaling ``b0``) is Learn-to-Steer: it names the Learn-to-Steer module.
    """
    if method == "l2s" or scaling_name == "b0":
        return f"l2s-{direction}-seed{seed_index}"
    if method == "amps":
        return f"amps-{direction}-{scaling_name}-seed{seed_index}"
    raise ValueError(f"{method!r} has no trained module; expected one of {LEARNED}")


def load_steering_module(folder: str | Path, method: str = "amps", direction: str = "to_vision", seed: int = 0) -> SteeringModule:
    """A trained module of a pipeline run, as the run applied it.

    ``folder`` is the run's ``amps/<model>`` folder (``results/<run>/amps/<model>``): its ``steerers/`` hold
    the modules and its ``selection.json`` what validation chose. ``method`` is ``amps`` (the module of the
    chosen scaling: Learn-to-Steer's where it chose β = 0) or ``l2s``; ``direction`` ``to_vision`` or
    ``to_text``; ``seed`` the module seed (0 to ``amps.seeds`` − 1). The module comes with that seed's
    chosen strength, the run's strength unit and its steering positions.

    Example::

        module = amps.load_steering_module("results/offline-default/amps/toy-s", "amps", "to_vision")
        with module.apply(model.model):
            steered = model.model.generate(**inputs, max_new_tokens=8)
    """
    if method not in LEARNED:
        raise ValueError(f"{method!r} has no trained module; expected one of {LEARNED}")
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown steering direction {direction!r}; expected one of {list(DIRECTIONS)}")
    path = Path(folder) / "selection.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: name a run's amps/<model> folder after its select_amps step")
    selection = read_json(path)
    choice = selection[direction][method]
    strengths = {entry["seed"]: entry["strength"] for entry in choice["seeds"]}
    if seed not in strengths:
        raise ValueError(f"{path} has {method} modules of seeds {sorted(strengths)}, not of seed {seed}")
    scaling_name = choice["scaling"]["name"] if method == "amps" else "b0"
    name = module_name(method, direction, seed, scaling_name)
    module, config = load_steerer(Path(folder) / "steerers" / f"{name}.safetensors")
    scale = selection["reference_norm"] / selection["typical_norm"]
    return SteeringModule(module, config, scale, selection["positions"], strengths[seed])
