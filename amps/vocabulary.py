"""The pipeline's names, each list in its canonical order: splits, option orders, conditions, directions,
methods, ablation families, modalities and estimators.

Plain Python with no imports: the rule files (``workflow/rules/*.smk``) import these lists instead of
repeating them, and every module names them from here. Orders matter (they set the order of jobs, rows
and columns), and some lists hold the same names in different orders on purpose.
"""

from __future__ import annotations

#: The benchmark's splits.
SPLITS = ("steer_train", "validation", "test")
#: The split whose records define the mean vector and the strength unit.
MEAN_SPLIT = "steer_train"
#: The six keys of an MC² record.
MC2_KEYS = ("image_id", "task", "question", "answer_vision", "answer_text", "context")
#: Option order: "vision_first" puts answer_vision at A, "text_first" puts answer_text at A.
ORDERS: tuple[str, str] = ("vision_first", "text_first")
#: What an answer followed: the image's answer, the text's, or neither (no option, or both).
CHOICES = ("vision", "text", "other")

#: Baseline conditions: (prompt kind, instruction, blank image). The conflict record under each
#: instruction; the agreeing control (a context that supports the image) under each instruction, which
#: catches "pick the option the text does not mention"; and the conflict under the image instruction
#: with a blank image, which a model that reads the image answers at chance.
BASELINE_CONDITIONS: dict[str, tuple[str, str, bool]] = {
    "none": ("conflict", "none", False),
    "text": ("conflict", "text", False),
    "image": ("conflict", "image", False),
    "agreeing": ("agreeing", "none", False),
    "agreeing_image": ("agreeing", "image", False),
    "agreeing_text": ("agreeing", "text", False),
    "blank_image": ("conflict", "image", True),
}
#: Prompts read for every record's contrastive activations: plain, image instruction, text instruction.
CONTRASTIVE_CONDITIONS = ("none", "image", "text")
#: Prompt kinds of the steered evaluation: the conflict, and the agreeing control.
PROMPT_KINDS = ("conflict", "agreeing")

#: Direction name -> sign applied to the mean "toward vision" vector, and the modality it targets.
DIRECTIONS: dict[str, tuple[float, str]] = {"to_vision": (1.0, "vision"), "to_text": (-1.0, "text")}
#: The instruction that asks for each direction's target modality.
INSTRUCTION_FOR = {"to_vision": "image", "to_text": "text"}
#: Where a steering vector is added. ``all``: every prompt position and every generated token;
#: ``prompt``: prompt positions only; ``generated``: generated tokens only; ``last``: the last
#: prompt position only (where the contrastive activations are read).
POSITIONS = ("all", "prompt", "generated", "last")
#: The unit of the steering strength α in every table (see :func:`amps.steering.hook.hook.scaled_direction`).
ALPHA_UNIT = "mean norm of the plain prompt's last-token hidden state at the steering layer (steer_train)"

#: The steering methods in the order the steered evaluation runs them (Learn-to-Steer before AMPS: AMPS
#: with β = 0 reuses its answers) and the rules expect their answers.
METHODS = ("instruction", "mean", "p2s", "l2s", "amps", "amps_online")
#: Methods with a trained module per seed (compared seed by seed).
LEARNED = ("l2s", "amps")
#: Methods in table order; ``none`` is the unsteered reference.
TABLE_METHODS = ("none", "instruction", "mean", "l2s", "amps", "amps_online", "p2s")
METHOD_LABELS = {
    "none": "no steering",
    "instruction": "prompt instruction",
    "mean": "mean steering",
    "l2s": "Learn-to-Steer",
    "amps": "AMPS",
    "amps_online": "AMPS-online",
    "p2s": "prompt-to-steer (oracle)",
}
#: Methods with a strength curve, in the column order of the tables across scales.
CURVE_METHODS = ("mean", "l2s", "amps", "amps_online", "p2s")
#: Methods with a validation choice, in the row order of the selection table.
SELECTED = ("mean", "p2s", "l2s", "amps", "amps_online")
#: Methods compared with AMPS at matched shift.
COMPARED = ("mean", "l2s", "amps_online", "p2s")
#: Vector families of the AMPS target: each prompt's own contrastive vector, or the mean vector.
VECTORS = ("per_sample", "mean")

#: The families of AMPS ablations, in job-output and table order.
ABLATION_FAMILIES = ("beta", "anchor", "layer", "samples", "estimator", "vector")
#: Families whose variants change γ, so AMPS-online runs beside the module.
MCR_FAMILIES = ("beta", "anchor", "samples", "estimator")

#: AMPS's tables beside the point scores (amps_<name>.csv, .md and .tex), in the order they are written.
AMPS_TABLES = ("main", "scale", "matched", "budget", "selection", "ablation")

#: The modalities whose KV-cache entries the MCR perturbs.
MODALITIES = ("text", "image")
#: MCR estimator -> column of the MCR table.
ESTIMATORS = {"entropy": "mcr", "fisher": "mcr_fisher"}
#: Which answer the MCR's ``f`` scores: the model's own clean answer, or the image- or text-consistent option.
MCR_ANSWERS = ("clean", "vision", "text")
#: Which tokens are the MCR's text modality: the text context alone, or the whole user prompt.
TEXT_POSITIONS = ("context", "prompt")
#: The per-sample sensitivity scores of the sweep.
SENSITIVITY_SCORES = ("flip_alpha", "collapse_alpha")
