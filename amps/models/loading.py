"""Loading a model and its processor as every pipeline step does: from a saved folder or a hub id, checked.

:func:`load_model` loads any supported family (:data:`amps.models.interface.FAMILIES`) through
``AutoModelForImageTextToText`` / ``AutoProcessor`` and wraps it in a :class:`MultimodalModel`; a local folder
is checked first, weights transformers would re-initialise are an error, and transformers itself must be a
release amps supports (checked when this module is imported).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from packaging.version import Version
from transformers import AutoModelForImageTextToText, AutoProcessor, PretrainedConfig
from transformers.utils import is_torchvision_available

from amps.core.config import is_local_path
from amps.models.interface import FAMILIES, INTERNAL_POSITIONS, MultimodalModel

#: Files without which a saved model folder cannot load.
REQUIRED_MODEL_FILES = ("config.json",)

#: The transformers releases amps runs on: the MCR passes ``cache=`` and reads ``output.cache`` (from 5.24).
TRANSFORMERS_SUPPORTED = (Version("5.24"), Version("6"))


def check_transformers_version(version: str = transformers.__version__) -> None:
    """Fail, naming the version, where transformers is outside the releases amps supports."""
    low, high = TRANSFORMERS_SUPPORTED
    if not low <= Version(version) < high:
        raise RuntimeError(
            f"amps needs transformers >={low},<{high} (the MCR's cache= argument exists from 5.24); found {version}: "
            f"pip install 'transformers>={low},<{high}'"
        )


check_transformers_version()


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` is bfloat16 on GPU and float32 on CPU."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; expected auto, float32, bfloat16 or float16") from None


def check_model_folder(path: str | Path) -> None:
    """Fail clearly when a local model folder lacks what loading needs, or has mismatched weights."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist")
    missing = [name for name in REQUIRED_MODEL_FILES if not (folder / name).is_file()]
    if not any(folder.glob("*.safetensors")):
        missing.append("*.safetensors (weights)")
    if missing:
        raise FileNotFoundError(f"model folder {folder} is missing {', '.join(missing)}")
    with open(folder / "config.json") as handle:
        model_type = json.load(handle).get("model_type")
    if model_type not in FAMILIES:
        raise ValueError(f"model folder {folder} has model_type {model_type!r}; amps supports {FAMILIES}")


def load_model(
    path: str | Path,
    device: str = "auto",
    dtype: str = "auto",
    device_map: str | None = None,
    trust_remote_code: bool = False,
    pad_to_square: bool = False,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> MultimodalModel:
    """Load a model and its processor from a saved folder or hub id, as every pipeline step loads its model.

    ``device`` ``auto`` is CUDA when available, else the CPU; ``dtype`` ``auto`` is bfloat16 on a GPU and
    float32 on the CPU. ``device_map`` (e.g. ``"auto"``) shards a large model over the visible GPUs instead.
    Remote code runs only with ``trust_remote_code``. A local folder must hold ``config.json`` and safetensors
    weights that match it: weights transformers would have to re-initialise are an error, not a warning.
    ``pad_to_square`` pads images as LLaVA-1.5 was trained (:func:`pad_to_square`); ``min_pixels`` and
    ``max_pixels`` bound a Qwen2-VL-family processor's resizing (``None``: the processor's own).

    Example::

        model = amps.load_model("results/offline-default/models/toy-s")
        model.family, model.num_layers      # ('llava', 4)
        model.model, model.processor        # the transformers model and its processor
    """
    if is_local_path(str(path)):
        check_model_folder(path)
    # The Qwen image processors read their pixel bounds from ``size`` (shortest_edge: the fewest pixels).
    bounds = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    bounds = {key: value for key, value in bounds.items() if value is not None}
    if bounds:  # checked on the config, before any weight is read
        model_type = PretrainedConfig.get_config_dict(str(path))[0].get("model_type")
        if model_type not in INTERNAL_POSITIONS:
            named = [name for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if value is not None]
            raise ValueError(f"{', '.join(named)} apply to Qwen2-VL-family processors; {path} is {model_type}")
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)
    model, loading = AutoModelForImageTextToText.from_pretrained(
        str(path),
        dtype=torch_dtype,
        device_map=device_map,
        trust_remote_code=trust_remote_code,
        use_safetensors=True,
        output_loading_info=True,
    )
    # transformers re-initialises weights it could not load and only warns; a half-random model
    # would silently produce meaningless results, so that is an error here.
    problems = {kind: loading.get(kind) for kind in ("missing_keys", "mismatched_keys") if loading.get(kind)}
    if problems:
        details = "; ".join(f"{kind}: {sorted(map(str, keys))[:5]}" for kind, keys in problems.items())
        raise ValueError(f"the weights in {path} do not match its config ({details})")
    if device_map is None:
        model = model.to(target)
    processor = load_processor(path, trust_remote_code=trust_remote_code)
    if bounds:
        size = processor.image_processor.size
        processor.image_processor.size = type(size)(**{**dict(size), **bounds})
    return MultimodalModel(model, processor, None if device_map else target, pad_to_square)


def load_processor(path: str | Path, trust_remote_code: bool = False):
    """Load a model's processor.

    Qwen2-VL-family processors cannot be built without torchvision, so without it those models get the
    image-only processor (:mod:`amps.models.qwen`); every other failure, such as a download error, is raised as is.
    """
    from amps.models import qwen

    if not is_torchvision_available() and qwen.is_qwen_folder(path):
        return qwen.ImageOnlyQwenProcessor.from_pretrained(path)
    return AutoProcessor.from_pretrained(str(path), trust_remote_code=trust_remote_code)
