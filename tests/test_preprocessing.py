"""Preprocessing as the models were trained, and the versions and loading failures amps refuses to hide.

LLaVA-1.5 padded images to a square of the image mean (llava-hf's processor centre-crops instead); Qwen's
processors take bounds on an image's pixels; transformers before 5.24 lacks what the MCR calls; a processor
that fails to load is reported as it failed, not replaced.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from amps.core.config import ConfigError, load_config, validate_config
from amps.models import loading
from amps.models.interface import pad_to_square
from amps.models.loading import check_transformers_version, load_model, load_processor

from conftest import REPO
from tiny_models import build_tiny_model

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)


def wide_image() -> Image.Image:
    """A 64x32 image: red on its left quarter, blue on its right quarter, green between."""
    pixels = np.zeros((32, 64, 3), dtype=np.uint8)
    pixels[:, :16] = (255, 0, 0)
    pixels[:, 16:48] = (0, 255, 0)
    pixels[:, 48:] = (0, 0, 255)
    return Image.fromarray(pixels)


def test_pad_to_square_centres_the_image_on_the_truncated_mean():
    padded = np.asarray(pad_to_square(wide_image(), CLIP_MEAN))
    assert padded.shape == (64, 64, 3)
    # LLaVA's expand2square: int(255 * mean) = (122, 116, 104) above and below, the image in the middle rows.
    assert (padded[:16] == (122, 116, 104)).all() and (padded[48:] == (122, 116, 104)).all()
    assert (padded[16:48] == np.asarray(wide_image())).all()
    square = Image.new("RGB", (32, 32), "white")
    assert pad_to_square(square, CLIP_MEAN) is square


@pytest.fixture(scope="module")
def tiny_llava_dir(tmp_path_factory):
    return build_tiny_model("llava", tmp_path_factory.mktemp("llava"))


@pytest.fixture(scope="module")
def tiny_qwen_dir(tmp_path_factory):
    return build_tiny_model("qwen2_vl", tmp_path_factory.mktemp("qwen"))


def test_pad_to_square_keeps_the_edges_the_processor_would_crop(tiny_llava_dir):
    cropped = load_model(tiny_llava_dir, device="cpu")
    padded = load_model(tiny_llava_dir, device="cpu", pad_to_square=True)
    image, prompt = wide_image(), "What colour is on the left?"
    plain = cropped.encode([image], [prompt]).inputs["pixel_values"]
    seen = padded.encode([image], [prompt]).inputs["pixel_values"]
    square = pad_to_square(image, padded.processor.image_processor.image_mean)
    expected = padded.processor(text=[padded.render(prompt)], images=[square], return_tensors="pt")["pixel_values"]
    assert torch.equal(seen, expected)
    # The crop keeps the middle 32x32 (no red at all); the padded square keeps the red edge, shrunk.
    red = torch.tensor([(1 - CLIP_MEAN[0]) / 0.26862954])
    assert not torch.isclose(plain[0, 0], red, atol=0.05).any()
    assert torch.isclose(seen[0, 0, 16, :4], red, atol=0.05).all()


def test_qwen_pixel_bounds_set_the_image_tokens(tiny_qwen_dir):
    image = Image.new("RGB", (640, 480))
    grids = {}
    for bounds in ({}, {"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 16}):
        model = load_model(tiny_qwen_dir, device="cpu", **bounds)
        grids[bool(bounds)] = model.encode([image], ["Which colour?"]).inputs["image_grid_thw"].tolist()
        patch = model.processor.image_processor.patch_size
    _, height, width = grids[True][0]
    assert grids[False] != grids[True] and 28 * 28 * 4 <= height * width * patch**2 <= 28 * 28 * 16


def test_pixel_bounds_on_a_llava_are_an_error_before_any_weight_is_read(tiny_llava_dir, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the weights were read before the pixel bounds were checked")

    monkeypatch.setattr(loading.AutoModelForImageTextToText, "from_pretrained", refuse)
    with pytest.raises(ValueError, match="max_pixels apply to Qwen2-VL-family processors; .* is llava"):
        load_model(tiny_llava_dir, device="cpu", max_pixels=1000)


def test_the_config_checks_pixel_bounds():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["models"]["toy-s"]["max_pixels"] = 1000
    with pytest.raises(ConfigError, match=r"models\.toy-s: max_pixels apply to Qwen2-VL-family processors"):
        validate_config(config)
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    name = next(iter(config["models"]))
    config["models"][name] = {
        "source": "pretrained",
        "path": "Qwen/Qwen2-VL-7B-Instruct",
        "steering_layers": [1],
        "min_pixels": 5000,
        "max_pixels": 4000,
    }
    with pytest.raises(ConfigError, match=rf"models\.{name}: min_pixels 5000 is above max_pixels 4000"):
        validate_config(config, check_paths=False)


def test_paper_config_pads_llava_to_square():
    config = load_config(REPO / "config" / "paper.yaml", check_paths=False)
    padded = {name for name, spec in config["models"].items() if spec["pad_to_square"]}
    assert padded == {name for name in config["models"] if name.startswith("llava")} != set()


@pytest.mark.parametrize("version", ["5.17.0", "5.23.0", "6.0.0"])
def test_unsupported_transformers_is_named(version):
    with pytest.raises(RuntimeError, match=rf"amps needs transformers >=5\.24,<6 .*found {re.escape(version)}"):
        check_transformers_version(version)


def test_supported_transformers_passes_and_the_pins_agree():
    check_transformers_version("5.24.0")
    check_transformers_version("5.99.1")
    pyproject = (REPO / "pyproject.toml").read_text()
    environment = (REPO / "environment.yml").read_text()
    assert '"transformers>=5.24,<6"' in pyproject and "- transformers>=5.24,<6" in environment


def test_a_processor_that_fails_to_load_is_not_replaced(monkeypatch, tiny_qwen_dir):
    """With torchvision, a Qwen folder loads AutoProcessor: its failure (a download error) is raised as it is."""

    def refuse(*args, **kwargs):
        raise OSError("connection reset while downloading preprocessor_config.json")

    monkeypatch.setattr(loading, "is_torchvision_available", lambda: True)
    monkeypatch.setattr(loading.AutoProcessor, "from_pretrained", refuse)
    with pytest.raises(OSError, match="connection reset"):
        load_processor(tiny_qwen_dir)
