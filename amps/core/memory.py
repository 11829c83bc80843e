"""Memory formulas: the bytes a job holds at its peak, from the model's shapes (torch-free).

A job's memory is its weights, the encoded prompts it holds (inputs), the KV cache and the activations of
the operation it runs. :mod:`amps.core.resources` plans every job's requests with these formulas
(``amps plan-resources``), the MCR derives its rows per pass from :func:`mcr_pass_bytes` and the
device's free memory, and ``benchmarks/memory_plan.py`` checks every formula against the peak measured
on tiny models. Each term names the tensors it counts; ``b`` is the bytes of one value in the model's
dtype.

The shapes of the paper's checkpoints are in :data:`PRETRAINED_SHAPES` (from their ``config.json``; the
image of an MC² record is a 640x480 COCO photograph); toy models' shapes follow from their
architecture (:func:`toy_shape`).
"""

from __future__ import annotations

from dataclasses import dataclass

FLOAT32 = 4
#: Share of a GPU's free memory a job plans to fill (the allocator fragments the rest).
USABLE_GPU_SHARE = 0.9
#: Per prompt position: input ids, attention mask and position ids (or token types) as int64, and the
#: image, prompt-text and context masks as bools.
INDEX_BYTES_PER_POSITION = 3 * 8 + 3
#: The toy world's word-level vocabulary has about 100 words (tests/test_memory.py keeps it below this).
TOY_VOCABULARY = 128
#: Text positions of the longest toy prompt (chat template, context, question, options, instruction);
#: tests/test_memory.py keeps every world prompt within it.
TOY_PROMPT_TOKENS = 96


@dataclass(frozen=True)
class TextShape:
    """The language model's shapes: what the KV cache and the decoder's activations scale with."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int


@dataclass(frozen=True)
class ModelShape:
    """A model's size and shapes, and its prompts' lengths."""

    #: Parameters (the weights' count).
    parameters: float
    text: TextShape
    vision_hidden: int
    vision_intermediate: int
    #: Positions the vision tower runs on per image (patches, plus CLIP's class token).
    vision_positions: int
    #: Hidden states the tower returns besides its output: LLaVA asks CLIP for every layer's (it takes
    #: the second to last), Qwen's tower returns none.
    vision_states_kept: int
    #: Positions an image takes in the language model's sequence.
    image_tokens: int
    #: Values the processor returns per image (float32).
    pixel_values: int
    #: Text positions of a prompt: chat template, context, question, options and instruction.
    prompt_tokens: int

    @property
    def sequence(self) -> int:
        return self.image_tokens + self.prompt_tokens


def text_shape(config) -> TextShape:
    """The :class:`TextShape` of a transformers text config (``model.config.get_text_config()``)."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return TextShape(
        layers=config.num_hidden_layers,
        hidden=config.hidden_size,
        heads=config.num_attention_heads,
        kv_heads=config.num_key_value_heads or config.num_attention_heads,
        head_dim=head_dim,
        intermediate=config.intermediate_size,
        vocab=config.vocab_size,
    )


def _llava_1_5(parameters: float, layers: int, hidden: int, intermediate: int) -> ModelShape:
    # Vicuna text model (no grouped heads), CLIP ViT-L/14 at 336 pixels: 576 patches + the class token.
    return ModelShape(
        parameters=parameters,
        text=TextShape(layers, hidden, hidden // 128, hidden // 128, 128, intermediate, 32064),
        vision_hidden=1024,
        vision_intermediate=4096,
        vision_positions=577,
        vision_states_kept=25,
        image_tokens=576,
        pixel_values=3 * 336 * 336,
        prompt_tokens=140,
    )


def _qwen(parameters: float, text: TextShape, vision_intermediate: int) -> ModelShape:
    # A 640x480 image is resized to 644x476: 46 x 34 = 1,564 patches of 14x14 (each 2 frames x 3 channels
    # x 14 x 14 = 1,176 values), merged 2x2 into 391 image tokens. ChatML adds a system turn to the prompt.
    return ModelShape(
        parameters=parameters,
        text=text,
        vision_hidden=1280,
        vision_intermediate=vision_intermediate,
        vision_positions=1564,
        vision_states_kept=0,
        image_tokens=391,
        pixel_values=1564 * 1176,
        prompt_tokens=160,
    )


#: The paper's checkpoints, by hub path.
PRETRAINED_SHAPES = {
    "llava-hf/llava-1.5-7b-hf": _llava_1_5(7.06e9, 32, 4096, 11008),
    "llava-hf/llava-1.5-13b-hf": _llava_1_5(13.35e9, 40, 5120, 13824),
    "Qwen/Qwen2-VL-7B-Instruct": _qwen(8.29e9, TextShape(28, 3584, 28, 4, 128, 18944, 152064), 5120),
    "Qwen/Qwen2.5-VL-3B-Instruct": _qwen(3.75e9, TextShape(36, 2048, 16, 2, 128, 11008, 151936), 3420),
    "Qwen/Qwen2.5-VL-7B-Instruct": _qwen(8.29e9, TextShape(28, 3584, 28, 4, 128, 18944, 152064), 3420),
    "Qwen/Qwen2.5-VL-32B-Instruct": _qwen(33.45e9, TextShape(64, 5120, 40, 8, 128, 27648, 152064), 3420),
}


def toy_shape(architecture: dict) -> ModelShape:
    """The shape of a toy LLaVA (:mod:`amps.models.toy`: MLPs twice as wide as the model, tied embeddings)."""
    hidden, vision_hidden = architecture["text_hidden"], architecture["vision_hidden"]
    patches = (architecture["image_size"] // architecture["patch_size"]) ** 2
    text = TextShape(
        layers=architecture["text_layers"],
        hidden=hidden,
        heads=architecture["text_heads"],
        kv_heads=architecture["text_heads"],
        head_dim=hidden // architecture["text_heads"],
        intermediate=2 * hidden,
        vocab=TOY_VOCABULARY,
    )
    # Text, per layer: four attention projections, three MLP matrices, two norms; the (tied) embeddings and
    # the final norm. Vision, per layer: four attention projections and two MLP matrices with their biases,
    # two layer norms; the patch embedding, class and position embeddings, pre- and post-norm. The
    # projector: two linear layers with biases.
    intermediate, vision_intermediate = text.intermediate, 2 * vision_hidden
    text_parameters = text.vocab * hidden + text.layers * (4 * hidden**2 + 3 * hidden * intermediate + 2 * hidden) + hidden
    vision_layer = 4 * vision_hidden**2 + 2 * vision_hidden * vision_intermediate + 9 * vision_hidden + vision_intermediate
    vision_parameters = architecture["vision_layers"] * vision_layer + 3 * architecture["patch_size"] ** 2 * vision_hidden
    vision_parameters += (patches + 2) * vision_hidden + 4 * vision_hidden
    projector = vision_hidden * hidden + hidden * hidden + 2 * hidden
    return ModelShape(
        parameters=text_parameters + vision_parameters + projector,
        text=text,
        vision_hidden=vision_hidden,
        vision_intermediate=vision_intermediate,
        vision_positions=patches + 1,
        vision_states_kept=architecture["vision_layers"] + 1,
        image_tokens=patches,
        pixel_values=3 * architecture["image_size"] ** 2,
        prompt_tokens=TOY_PROMPT_TOKENS,
    )


def weights_bytes(shape: ModelShape, b: int) -> float:
    return shape.parameters * b


def inputs_bytes(shape: ModelShape, prompts: int, b: int) -> float:
    """Encoded prompts: each image's pixel values in the model's dtype (amps.models.interface casts them when it
    encodes) and the index tensors of its positions."""
    return prompts * (shape.pixel_values * b + shape.sequence * INDEX_BYTES_PER_POSITION)


def cache_bytes(text: TextShape, rows: int, positions: int, b: int) -> float:
    """Keys and values of ``positions`` positions in every layer, for ``rows`` rows."""
    return rows * text.layers * 2 * text.kv_heads * text.head_dim * positions * b


def vision_bytes(shape: ModelShape, rows: int, b: int) -> float:
    """The vision tower's peak: the hidden states it keeps, plus one block's working set (three
    hidden-wide and two MLP-wide tensors per position)."""
    width = (shape.vision_states_kept + 3) * shape.vision_hidden + 2 * shape.vision_intermediate
    return rows * shape.vision_positions * width * b


def decoder_bytes(shape: ModelShape, rows: int, positions: int, b: int) -> float:
    """A prefill's activations beside its cache: in the widest step (one decoder layer's MLP) three
    MLP-wide tensors (gate, up, their product), four hidden-wide ones (the embeddings, the residual
    stream, its norm, the last layer's output) and the rotary cosines and sines; the image features
    (projected: two hidden-wide copies) and the tower's selected state; the attention mask (one byte per
    query-key pair)."""
    text = shape.text
    return (
        rows * positions * (3 * text.intermediate + 4 * text.hidden + 2 * text.head_dim) * b
        + rows * shape.image_tokens * 2 * text.hidden * b
        + rows * shape.vision_positions * shape.vision_hidden * b
        + rows * positions * positions
    )


def logits_bytes(text: TextShape, rows: int) -> float:
    """The next-token logits in float32 and the scores generation derives from them."""
    return rows * text.vocab * FLOAT32 * 2


def generation_activations(shape: ModelShape, rows: int, b: int) -> float:
    """Activations of a batched forward or greedy generation: the larger of the vision tower's peak and
    the prefill's (the cache is counted apart, by :func:`cache_bytes`)."""
    return max(vision_bytes(shape, rows, b), decoder_bytes(shape, rows, shape.sequence, b) + logits_bytes(shape.text, rows))


def mcr_pass_bytes(text: TextShape, rows: int, positions: int, length: int, b: int, fisher: bool) -> float:
    """One MCR pass of ``rows`` samples over ``positions`` perturbed positions of a ``length``-position cache.

    Each row holds its own copy of the perturbed entries; one sample's noise is held once. Per row and
    layer the fed token keeps four hidden-wide and three MLP-wide values and its attention over the
    cache (scores and weights in the cache dtype, the softmax in float32); with the Fisher term the
    backward pass needs every layer's (else one layer's at a time), and the gradient of one layer's
    keys or values is alive twice while it is made and reduced.
    """
    entries = cache_bytes(text, 1, positions, b)
    token = (4 * text.hidden + 3 * text.intermediate) * b + text.heads * length * (2 * b + FLOAT32)
    per_row = entries + token * (text.layers if fisher else 1)
    if fisher:
        per_row += 2 * entries / (2 * text.layers)
    return rows * per_row + entries


def mcr_bytes(shape: ModelShape, rows: int, b: int, fisher: bool, positions: int | None = None) -> tuple[float, float]:
    """(cache, activations) of an MCR job: both option orders' prefilled caches and the clean entries the
    rows share; the larger of the prefill's activations (one prompt) and one pass of ``rows`` samples.

    ``positions`` are the perturbed positions of the larger modality; by default the image tokens or,
    where it is longer, the whole prompt text (a bound on the text modality's positions).
    """
    positions = positions or max(shape.image_tokens, shape.prompt_tokens)
    cache = 2 * cache_bytes(shape.text, 1, shape.sequence, b) + cache_bytes(shape.text, 1, shape.sequence - positions, b)
    scoring = mcr_pass_bytes(shape.text, rows, positions, shape.sequence, b, fisher)
    return cache, max(generation_activations(shape, 1, b), scoring)


def rows_that_fit(text: TextShape, free_bytes: float, positions: int, length: int, b: int, fisher: bool) -> int:
    """The most MCR rows one pass can take in ``free_bytes`` (at least 1)."""
    fixed = mcr_pass_bytes(text, 0, positions, length, b, fisher)
    per_row = mcr_pass_bytes(text, 1, positions, length, b, fisher) - fixed
    return max(1, int((free_bytes - fixed) // per_row))
