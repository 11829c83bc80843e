"""An image-only processor for Qwen2-VL and Qwen2.5-VL, for machines without torchvision.

``Qwen2VLProcessor`` and ``Qwen2_5_VLProcessor`` cannot be constructed without torchvision: their
video processor requires it, even when no video is ever passed. amps asks only about images, so
:class:`ImageOnlyQwenProcessor` keeps the real processor's image path (the same class, minus the
video processor): the Qwen2-VL image processor, the tokenizer, ``<|image_pad|>`` expanded to
``image_grid_thw.prod() // merge_size**2`` copies per image, and ``mm_token_type_ids``. Where
torchvision is installed, :func:`amps.models.loading.load_processor` uses ``AutoProcessor`` and this class
is never built.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import PretrainedConfig, Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin

#: ``config.model_type`` of the models whose processor this class stands in for.
QWEN_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl")
IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"


def is_qwen_folder(path: str | Path) -> bool:
    """Whether ``path`` (a local folder or hub id) holds a Qwen2-VL-family model, by its config's model_type."""
    try:
        config, _ = PretrainedConfig.get_config_dict(str(path))
    except (OSError, ValueError):
        return False
    return config.get("model_type") in QWEN_MODEL_TYPES


class ImageOnlyQwenProcessor(Qwen2VLProcessor):
    """``Qwen2VLProcessor`` without a video processor; images and text behave exactly as in the original.

    Inherits the original's token expansion (``replace_image_token``), ``mm_token_type_ids``,
    ``_get_num_multimodal_tokens``, ``apply_chat_template`` and ``from_pretrained``; only the
    constructor (no video processor) and saving (no processor class of its own) differ.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template: str | None = None):
        self.image_token = getattr(tokenizer, "image_token", None) or IMAGE_TOKEN
        self.video_token = getattr(tokenizer, "video_token", None) or VIDEO_TOKEN
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        if self.image_token_id is None or self.image_token_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {self.image_token} token; is this a Qwen2-VL-family tokenizer?")
        # The original constructor would require a video processor: initialise the mixin directly.
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    def save_pretrained(self, save_directory: str | Path) -> list[str]:
        """Save the tokenizer, the image processor (``processor_config.json``) and the chat template.

        No ``processor_class`` is written (the mixin would write this class's name), so that
        ``AutoProcessor`` on a machine with torchvision picks the model's own processor from its
        ``config.json`` and loads the folder as it would a hub checkpoint.
        """
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.init_kwargs.pop("processor_class", None)
        self.tokenizer.save_pretrained(folder)
        processor_file = folder / "processor_config.json"
        image_processor = json.loads(self.image_processor.to_json_string())
        processor_file.write_text(json.dumps({"image_processor": image_processor}, indent=2) + "\n")
        saved = [str(processor_file)]
        if self.chat_template:
            template_file = folder / "chat_template.jinja"
            template_file.write_text(self.chat_template)
            saved.append(str(template_file))
        return saved
