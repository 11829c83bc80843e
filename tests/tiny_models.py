"""Tiny random-weight LLaVA-1.5, Qwen2-VL and Qwen2.5-VL checkpoints, built from configs with no download.

Each builder writes a folder laid out like the hub checkpoint of its family (``config.json``,
safetensors weights, tokenizer, image processor, chat template), so tests load it through
:func:`amps.models.loading.load_model` exactly as they would the real model. Tokenizers are BPE
models trained here on prompt-like text: LLaVA's in the sentencepiece style (``▁`` word marks, a
``<s>`` prepended), Qwen's byte-level (any text encodes), each with its family's special tokens and
a chat template in its family's format. Weights are random: outputs mean nothing, shapes and token
layout are real.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from amps.data import prompts
from amps.models.interface import MultimodalModel
from amps.models.qwen import ImageOnlyQwenProcessor
from amps.vocabulary import ORDERS

TINY_FAMILIES = ("llava", "qwen2_vl", "qwen2_5_vl")
VOCAB_SIZE = 600
TEXT_LAYERS = 3
TEXT_HIDDEN = 64
TEXT_HEADS = 2
#: LLaVA: CLIP crops every image to this square, so each image gives (32 / 8)² = 16 tokens.
LLAVA_IMAGE_SIZE = 32
LLAVA_PATCH_SIZE = 8
#: Qwen: images keep their aspect ratio, resized to multiples of patch × merge = 16 pixels within
#: these pixel bounds, so the image-token count varies between 1 and 9 per image.
QWEN_PATCH_SIZE = 8
QWEN_MERGE_SIZE = 2
QWEN_MIN_PIXELS = 16 * 16
QWEN_MAX_PIXELS = 48 * 48

LLAVA_SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<image>", "<pad>")
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# llava-hf's LLaVA-1.5 format: "USER: <image>\n{prompt} ASSISTANT:" (images first, then text).
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'].upper() + ': ' }}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}{{ '<image>\\n' }}{% endif %}{% endfor %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] + ' ' }}{% endif %}{% endfor %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
# Qwen's ChatML format with the default system turn and the vision markers around the image pad.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def tokenizer_corpus() -> list[str]:
    """Text the tiny tokenizers learn their merges from: the prompt protocol and MC²-like sentences."""
    record = {
        "question": "What color is the bus in the picture?",
        "answer_vision": "red",
        "answer_text": "blue",
        "context": "A blue bus waits at the corner while people walk past the shops on a sunny day.",
    }
    texts = [
        prompts.conflict_query(record, order, instruction).prompt for order in ORDERS for instruction in prompts.INSTRUCTIONS
    ]
    texts += ["USER: ASSISTANT: system user assistant You are a helpful assistant.", "A B A. B. The answer is"]
    return texts * 4


def _train_bpe(backend: Tokenizer, special_tokens: tuple[str, ...], alphabet: list[str]) -> Tokenizer:
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=list(special_tokens), initial_alphabet=alphabet, show_progress=False
    )
    backend.train_from_iterator(tokenizer_corpus(), trainer)
    return backend


def build_llava_tokenizer() -> PreTrainedTokenizerFast:
    """A Llama-style tokenizer: ``▁`` word marks, ``<s>`` prepended, ``<image>`` and ``<pad>`` special."""
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    printable = [chr(code) for code in range(32, 127)] + ["▁", "\n"]
    _train_bpe(backend, LLAVA_SPECIAL_TOKENS, printable)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", backend.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        # Without being special, "<image>" would be split into pieces by the pre-tokenizer.
        extra_special_tokens={"image_token": "<image>"},
        padding_side="left",
    )


def build_qwen_tokenizer() -> PreTrainedTokenizerFast:
    """A Qwen-style byte-level tokenizer with Qwen's special tokens (pad ``<|endoftext|>``, EOS ``<|im_end|>``)."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    _train_bpe(backend, QWEN_SPECIAL_TOKENS, pre_tokenizers.ByteLevel.alphabet())
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )


def set_generation_tokens(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast) -> None:
    """Give ``model`` the tokenizer's padding and end tokens for generation."""
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id


def build_tiny_llava(folder: Path, seed: int = 0) -> Path:
    """A LLaVA-1.5-shaped model (CLIP tower, second-to-last layer features, CLS dropped; Llama text model)."""
    tokenizer = build_llava_tokenizer()
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(
            size={"shortest_edge": LLAVA_IMAGE_SIZE}, crop_size={"height": LLAVA_IMAGE_SIZE, "width": LLAVA_IMAGE_SIZE}
        ),
        tokenizer=tokenizer,
        patch_size=LLAVA_PATCH_SIZE,
        # CLIP's CLS token is dropped by the "default" strategy: one image token per patch.
        num_additional_image_tokens=1,
        vision_feature_select_strategy="default",
        chat_template=LLAVA_CHAT_TEMPLATE,
        image_token="<image>",
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=LLAVA_IMAGE_SIZE,
            patch_size=LLAVA_PATCH_SIZE,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=TEXT_HIDDEN,
            intermediate_size=TEXT_HIDDEN * 2,
            num_hidden_layers=TEXT_LAYERS,
            num_attention_heads=TEXT_HEADS,
            num_key_value_heads=TEXT_HEADS,
            max_position_embeddings=2048,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(LLAVA_IMAGE_SIZE // LLAVA_PATCH_SIZE) ** 2,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    set_generation_tokens(model, tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def qwen_token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """The ids of a Qwen2-VL-family config's image, video and vision-boundary tokens, from ``tokenizer``."""
    tokens = {
        "image_token_id": "<|image_pad|>",
        "video_token_id": "<|video_pad|>",
        "vision_start_token_id": "<|vision_start|>",
        "vision_end_token_id": "<|vision_end|>",
    }
    return {name: tokenizer.convert_tokens_to_ids(token) for name, token in tokens.items()}


def _qwen_config(family: str, tokenizer: PreTrainedTokenizerFast) -> Qwen2VLConfig | Qwen2_5_VLConfig:
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=TEXT_HIDDEN * 2,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=TEXT_HEADS,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        # M-RoPE splits each head's rotary half (head_dim / 2 = 16) over time, height and width.
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
    )
    token_ids = qwen_token_ids(tokenizer)
    patches = dict(patch_size=QWEN_PATCH_SIZE, spatial_merge_size=QWEN_MERGE_SIZE, temporal_patch_size=2)
    if family == "qwen2_vl":
        vision = dict(depth=2, embed_dim=32, hidden_size=TEXT_HIDDEN, num_heads=2, mlp_ratio=2, **patches)
        return Qwen2VLConfig(text_config=text, vision_config=vision, **token_ids)
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=TEXT_HIDDEN,
        # Window attention on block 0, full attention on block 1, as the real towers alternate.
        window_size=QWEN_PATCH_SIZE * QWEN_MERGE_SIZE * 2,
        fullatt_block_indexes=[1],
        **patches,
    )
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **token_ids)


def build_tiny_qwen(folder: Path, family: str, seed: int = 0) -> Path:
    """A Qwen2-VL (``family="qwen2_vl"``) or Qwen2.5-VL (``"qwen2_5_vl"``) model with the image-only processor."""
    model_class = {"qwen2_vl": Qwen2VLForConditionalGeneration, "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration}
    if family not in model_class:
        raise ValueError(f"unknown Qwen family {family!r}; expected one of {sorted(model_class)}")
    tokenizer = build_qwen_tokenizer()
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=QWEN_PATCH_SIZE,
        merge_size=QWEN_MERGE_SIZE,
        temporal_patch_size=2,
        min_pixels=QWEN_MIN_PIXELS,
        max_pixels=QWEN_MAX_PIXELS,
    )
    processor = ImageOnlyQwenProcessor(image_processor, tokenizer, chat_template=QWEN_CHAT_TEMPLATE)
    torch.manual_seed(seed)
    model = model_class[family](_qwen_config(family, tokenizer))
    set_generation_tokens(model, tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_model(family: str, folder: Path, seed: int = 0) -> Path:
    """Build and save the tiny model of ``family`` (one of :data:`TINY_FAMILIES`) into ``folder``."""
    if family == "llava":
        return build_tiny_llava(folder, seed)
    return build_tiny_qwen(folder, family, seed)


@contextlib.contextmanager
def forced_tokens(model: MultimodalModel, choose: Callable[[list[int]], dict[int, float]]) -> Iterator[None]:
    """Inside the block, each forward raises the next-token logit of every token ``choose`` names by its weight.

    ``choose`` gets a row's own tokens of the pass (its prompt in a prefill, the token just written in a
    decoding step), never its place in the batch, so a row is forced alike in any batch. The bias is added
    to the final hidden state at the last position (weight × the token's output row / its squared norm), so
    every reader of that state sees it: generation's logits and the MCR's float32 option scores.
    """
    head = model.model.get_output_embeddings().weight.detach()
    seen: dict[str, torch.Tensor] = {}

    def read_tokens(_module, _args, kwargs):
        seen["ids"], seen["mask"] = kwargs["input_ids"], kwargs["attention_mask"]

    def add_bias(_module, _args, output):
        ids, mask = seen["ids"], seen["mask"][:, -seen["ids"].shape[1] :]
        output = output.clone()
        for row in range(ids.shape[0]):
            for token, weight in choose(ids[row][mask[row].bool()].tolist()).items():
                output[row, -1] += weight * head[token] / head[token].dot(head[token])
        return output

    handles = [
        model.model.model.register_forward_pre_hook(read_tokens, with_kwargs=True),
        model.model.get_decoder().norm.register_forward_hook(add_bias),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
