"""One interface over the multimodal models amps runs on.

The toy LLaVA models of the offline world, LLaVA-1.5 (llava-hf), Qwen2-VL and Qwen2.5-VL all load
(:func:`load_model`) through ``AutoModelForImageTextToText`` / ``AutoProcessor`` from a folder or hub id, and expose the
same operations: batched inputs for (image, prompt) pairs with the chat template and left padding,
the decoder layers and hidden size, which sequence positions hold image tokens and which hold the
user's text, and greedy batched generation.

Encoded batches live on the host (image tensors already in the model's dtype) and go to the device one
at a time, when a forward or a generation runs them: a job may keep thousands of encoded prompts to
answer them under many steerings without holding them in GPU memory.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Sequence

import torch
from PIL import Image
from transformers import GenerationConfig, PreTrainedModel

from amps.models.batch import Batch

#: Model families the interface knows, keyed by ``config.model_type``.
FAMILIES = ("llava", "qwen2_vl", "qwen2_5_vl")
#: Families whose rotary positions are computed inside the model from the token layout (M-RoPE).
INTERNAL_POSITIONS = ("qwen2_vl", "qwen2_5_vl")
#: What amps keeps of a checkpoint's generation config: its special tokens (any other setting may change greedy output).
GENERATION_TOKENS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
log = logging.getLogger(__name__)


class MultimodalModel:
    """A loaded image-text model with the operations amps needs, whatever its family.

    ``model`` is the transformers model, ``processor`` its processor (its tokenizer pads on the left from
    here on: amps reads each row's last prompt position). :meth:`generate` decodes greedily whatever the
    model's generation config says (:func:`greedy_overrides`): a checkpoint's ``generation_config.json`` with
    sampling settings or a repetition penalty cannot change an answer. With ``pad_to_square`` every image is
    padded to a square of the processor's image mean before the processor sees it (:func:`pad_to_square`).
    :func:`load_model` builds one from a folder or hub id; a model and processor loaded otherwise are wrapped
    directly.

    Example::

        model = amps.MultimodalModel(AutoModelForImageTextToText.from_pretrained(path), AutoProcessor.from_pretrained(path))
        batch = model.encode([image], ["What colour is the bus?"])
        model.generate(batch, max_new_tokens=8)     # ['A. red']
    """

    def __init__(self, model: torch.nn.Module, processor, device: torch.device | None = None, pad_to_square: bool = False):
        self.model = model.eval()
        self.processor = processor
        self.pad_to_square = pad_to_square
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.family: str = model.config.model_type
        if self.family not in FAMILIES:
            raise ValueError(f"unsupported model_type {self.family!r}; amps supports {FAMILIES}")
        parameter = next(model.parameters())
        self.device = device or parameter.device
        self.dtype = parameter.dtype
        self.image_token_id: int = model.config.image_token_id
        # Batches are encoded in a background thread; a fast tokenizer used by two at once fails ("Already borrowed").
        self._tokenizer_lock = threading.Lock()
        ids = [self.tokenizer.encode(letter, add_special_tokens=False) for letter in ("A", "B")]
        self._option_ids = (ids[0][0], ids[1][0])
        config = model.generation_config
        aside = {
            key: getattr(config, key)
            for key, plain in greedy_overrides(config).items()
            if getattr(config, key) not in (None, False, plain)
        }
        if aside:
            log.info("amps decodes greedily: the checkpoint's generation settings %s are set aside", aside)

    # ------------------------------------------------------------------ structure

    @property
    def decoder_layers(self) -> torch.nn.ModuleList:
        """The language model's decoder layers, in order."""
        return decoder_layers(self.model)

    @property
    def num_layers(self) -> int:
        return len(self.decoder_layers)

    @property
    def hidden_size(self) -> int:
        return hidden_size(self.model)

    def option_token_ids(self) -> tuple[int, int]:
        """Token ids of the answers "A" and "B" as the model would generate them first."""
        return self._option_ids

    def token_text(self, token: int) -> str:
        """A token as messages name it: its id and its text, e.g. ``319 ('▁A')``."""
        with self._tokenizer_lock:
            return f"{token} ({self.tokenizer.convert_ids_to_tokens(token)!r})"

    # ------------------------------------------------------------------ inputs

    def render(self, prompt: str) -> str:
        """The chat-template text of one user turn (image then prompt) with the generation prompt."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def encode(
        self,
        images: Sequence[Image.Image],
        prompts: Sequence[str],
        targets: Sequence[str] | None = None,
        locate_prompt: bool = True,
        contexts: Sequence[str | None] | None = None,
    ) -> Batch:
        """Build a left-padded batch, on the host; with ``targets``, append each target and EOS and set labels.

        Image tensors are cast to the model's dtype here (the model would cast them in its forward; a bf16
        copy is half the host memory), and the batch stays on the CPU: the model's forward and generation
        move it to the device. ``locate_prompt=False`` skips the prompt-token mask (a re-tokenization that
        costs about a tenth of a toy training step) and leaves ``text_mask`` as ``None``. ``contexts`` (each
        prompt's text context, a substring of it, or None) also marks the context's tokens. Safe to call
        from a background thread while the main thread answers.
        """
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        if contexts is not None and (len(contexts) != len(prompts) or not locate_prompt):
            raise ValueError("contexts need one entry per prompt and locate_prompt=True")
        texts = [self.render(prompt) for prompt in prompts]
        if self.pad_to_square:
            background = self.processor.image_processor.image_mean
            images = [pad_to_square(image, background) for image in images]
        with self._tokenizer_lock:
            processed = self.processor(text=texts, images=list(images), padding=True, return_tensors="pt")
            inputs = {key: value for key, value in processed.items() if isinstance(value, torch.Tensor)}
            image_mask = inputs["input_ids"] == self.image_token_id
            text_mask = context_mask = None
            if locate_prompt:
                text_mask, context_mask = self._prompt_token_mask(texts, prompts, inputs["input_ids"], image_mask, contexts)
            labels = None
            if targets is not None:
                inputs, image_mask, text_mask, labels = self._append_targets(inputs, image_mask, text_mask, targets)
        if self.family not in INTERNAL_POSITIONS:
            inputs["position_ids"] = positions_from_mask(inputs["attention_mask"])
        inputs = {key: value.to(self.dtype) if value.is_floating_point() else value for key, value in inputs.items()}
        return Batch(inputs, image_mask, text_mask, labels, context_mask)

    def _prompt_token_mask(
        self,
        texts: list[str],
        prompts: Sequence[str],
        input_ids: torch.Tensor,
        image_mask: torch.Tensor,
        contexts: Sequence[str | None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mark the tokens whose characters lie inside the user's prompt (and, given ``contexts``, inside each context).

        The processor expands each image placeholder into one token per image feature; the same
        expansion is applied to the text, which is re-tokenized with character offsets. The token
        ids must match the processor's exactly, or the mask would be wrong, so that is checked.
        """
        image_token = self.tokenizer.convert_ids_to_tokens(self.image_token_id)
        expanded = []
        for text, count in zip(texts, image_mask.sum(dim=1).tolist()):
            if image_token not in text:
                raise ValueError(f"the chat template did not place the image token {image_token!r}")
            expanded.append(text.replace(image_token, image_token * count, 1))
        encoded = self.tokenizer(
            expanded, padding=True, return_offsets_mapping=True, return_tensors="pt", add_special_tokens=False
        )
        if not torch.equal(encoded["input_ids"], input_ids):
            encoded = self.tokenizer(expanded, padding=True, return_offsets_mapping=True, return_tensors="pt")
        if not torch.equal(encoded["input_ids"], input_ids):
            raise RuntimeError("re-tokenizing the expanded chat text did not reproduce the processor's token ids")
        mask = torch.zeros_like(input_ids, dtype=torch.bool)
        context_mask = None if contexts is None else torch.zeros_like(mask)

        def span(row: int, start: int, end: int) -> torch.Tensor:
            offsets = encoded["offset_mapping"][row]
            inside = (offsets[:, 0] >= start) & (offsets[:, 1] <= end) & (offsets[:, 1] > offsets[:, 0])
            return inside & encoded["attention_mask"][row].bool() & ~image_mask[row]

        for row, (text, prompt) in enumerate(zip(expanded, prompts)):
            start = text.rfind(prompt)
            if start < 0:
                raise ValueError("the chat template altered the prompt text; cannot locate its tokens")
            mask[row] = span(row, start, start + len(prompt))
            context = None if contexts is None else contexts[row]
            if context:
                offset = prompt.find(context)
                if offset < 0:
                    raise ValueError(f"the context {context[:40]!r} is not part of its prompt")
                context_mask[row] = span(row, start + offset, start + offset + len(context))
        return mask, context_mask

    def _append_targets(self, inputs, image_mask, text_mask, targets):
        """Append target tokens + EOS to each left-padded row (rows are re-padded on the left)."""
        eos = self.tokenizer.eos_token_id
        target_ids = [self.tokenizer.encode(target, add_special_tokens=False) + [eos] for target in targets]
        width = max(len(ids) for ids in target_ids)
        batch, length = inputs["input_ids"].shape
        pad = self.tokenizer.pad_token_id
        new_ids = torch.full((batch, length + width), pad, dtype=inputs["input_ids"].dtype)
        new_attention = torch.zeros((batch, length + width), dtype=inputs["attention_mask"].dtype)
        labels = torch.full((batch, length + width), -100, dtype=torch.long)
        new_image = torch.zeros((batch, length + width), dtype=torch.bool)
        new_text = None if text_mask is None else torch.zeros((batch, length + width), dtype=torch.bool)
        for row, ids in enumerate(target_ids):
            shift = width - len(ids)
            new_ids[row, shift : shift + length] = inputs["input_ids"][row]
            new_ids[row, shift + length :] = torch.tensor(ids)
            new_attention[row, shift : shift + length] = inputs["attention_mask"][row]
            new_attention[row, shift + length :] = 1
            labels[row, shift + length :] = torch.tensor(ids)
            new_image[row, shift : shift + length] = image_mask[row]
            if new_text is not None:
                new_text[row, shift : shift + length] = text_mask[row]
        extended = dict(inputs, input_ids=new_ids, attention_mask=new_attention)
        if "mm_token_type_ids" in inputs:
            token_types = torch.zeros_like(new_ids, dtype=inputs["mm_token_type_ids"].dtype)
            token_types[new_image] = inputs["mm_token_type_ids"][image_mask]
            extended["mm_token_type_ids"] = token_types
        # Labels are shifted inside the model: position t predicts token t + 1.
        return extended, new_image, new_text, labels

    # ------------------------------------------------------------------ running

    @torch.no_grad()
    def generate_tokens(self, batch: Batch, max_new_tokens: int) -> torch.Tensor:
        """The greedy new tokens of each row, on the host: [rows, at most ``max_new_tokens``].

        Generation stops once every row has ended; a row that ended earlier is padded after its end token.
        """
        inputs = batch.to(self.device).inputs
        output = self.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            **greedy_overrides(self.model.generation_config),
        )
        return output[:, inputs["input_ids"].shape[1] :].cpu()

    def decode(self, tokens: torch.Tensor | list[list[int]]) -> list[str]:
        """Each row's answer text: its new tokens decoded without special tokens (end, padding), stripped."""
        with self._tokenizer_lock:
            return [text.strip() for text in self.tokenizer.batch_decode(tokens, skip_special_tokens=True)]

    def end_tokens(self) -> list[int]:
        """The tokens that end an answer (generation stops a row there); empty when the model has none."""
        end = self.model.generation_config.eos_token_id
        return [] if end is None else torch.as_tensor(end).flatten().tolist()

    def ended(self, tokens: torch.Tensor) -> torch.Tensor:
        """Which rows of new tokens [rows, new] hold an end token (the answer is complete): [rows] booleans."""
        return torch.isin(tokens, torch.tensor(self.end_tokens(), dtype=tokens.dtype)).any(dim=1)

    def generate(self, batch: Batch, max_new_tokens: int) -> list[str]:
        """Greedy batched generation of the whole batch; returns the decoded new text of each row."""
        return self.decode(self.generate_tokens(batch, max_new_tokens))

    def forward(self, batch: Batch, **kwargs):
        """One forward pass over a batch, moved to the device (extra keyword arguments go to the model)."""
        return self.model(**batch.to(self.device).inputs, **kwargs)


def greedy_overrides(config: GenerationConfig) -> dict[str, Any]:
    """The generation arguments that undo every setting of ``config`` but its special tokens: plain greedy decoding.

    transformers fills every setting a generation call leaves unset from the model's own generation config, and
    applies a repetition penalty even without sampling: a checkpoint's ``generation_config.json`` (Qwen's sets
    ``repetition_penalty: 1.05`` and sampling settings) would change greedy answers. Arguments of a call take
    precedence over both, so each setting ``config`` makes is passed back at transformers' default.

    Example::

        greedy_overrides(GenerationConfig(repetition_penalty=1.05, do_sample=True, eos_token_id=2))
        # {'do_sample': False, 'repetition_penalty': 1.0}
    """
    plain = GenerationConfig()
    return {
        key: _unset(key)
        for key in config.to_diff_dict()
        if key not in (*GENERATION_TOKENS, "transformers_version") and not key.startswith("_") and hasattr(plain, key)
    }


def _unset(key: str) -> Any:
    """What transformers uses for a generation setting nobody set."""
    return GenerationConfig._get_default_generation_params().get(key)


def decoder_layers(model: MultimodalModel | PreTrainedModel) -> torch.nn.ModuleList:
    """The language model's decoder layers of an amps model or of a transformers image-text model, in order."""
    if isinstance(model, MultimodalModel):
        return model.decoder_layers
    if not isinstance(model, PreTrainedModel):
        raise TypeError(f"expected an amps MultimodalModel or a transformers model, got {type(model).__name__}")
    return model.get_decoder().layers


def hidden_size(model: MultimodalModel | PreTrainedModel) -> int:
    """The width of the language model's hidden states (what a steering vector adds to)."""
    network = model.model if isinstance(model, MultimodalModel) else model
    return network.config.get_text_config().hidden_size


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token (left padding)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def pad_to_square(image: Image.Image, background: Sequence[float]) -> Image.Image:
    """``image`` centred on a square of its longer side, filled with ``background`` (the processor's image mean, 0-1).

    LLaVA-1.5 was trained and evaluated on images padded this way; llava-hf's processor instead resizes the
    short side and centre-crops, which drops the edges of a wide image (a quarter of a 640x480 COCO image).

    Example::

        pad_to_square(Image.new("RGB", (640, 480)), [0.48, 0.46, 0.41]).size    # (640, 640)
    """
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    # LLaVA's own expand2square truncates the mean to integers; so does this, for the same pixels.
    square = Image.new("RGB", (side, side), tuple(int(255 * channel) for channel in background))
    square.paste(image.convert("RGB"), ((side - width) // 2, (side - height) // 2))
    return square
