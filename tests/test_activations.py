"""Contrastive activations: what is read, how the difference cancels the letter, the file and index."""

from __future__ import annotations

import pytest
import torch

from amps.data.benchmark import Benchmark
from amps.models.asking import make_question
from amps.steering.activations import Activations, contrastive_tensors, last_token_states, tensor_name
from amps.steering.steps import CollectActivations, collect_activations
from amps.vocabulary import ORDERS

from steps import TINY_MODEL, build


def _settings(layers: list[int]) -> CollectActivations:
    return build(
        CollectActivations, {"models": {"tiny": {**TINY_MODEL, "steering_layers": layers, "batch_size": 16}}}, model="tiny"
    )


@pytest.fixture(scope="module")
def collected(tiny_model_dir, tiny_benchmark_dir, tmp_path_factory) -> Activations:
    output = tmp_path_factory.mktemp("activations") / "tiny.safetensors"
    collect_activations(
        _settings([1, 0]), str(tiny_benchmark_dir), str(tiny_model_dir), str(output), str(output.with_suffix(".json"))
    )
    return Activations.load(output)


def test_last_token_states_are_the_layer_outputs(tiny_model, tiny_benchmark_dir):
    benchmark = Benchmark(tiny_benchmark_dir)
    records = benchmark.split("test").head(3)
    questions = [make_question(record, index, "none", "vision_first") for index, record in records.iterrows()]
    batch = tiny_model.encode(
        [benchmark.image(record["record_id"]) for _, record in records.iterrows()], [q.prompt for q in questions]
    )
    states = last_token_states(tiny_model, batch, [0])
    with torch.no_grad():
        hidden = tiny_model.forward(batch, output_hidden_states=True).hidden_states
    # hidden_states[0] is the embedding output, so layer 0's output is hidden_states[1].
    torch.testing.assert_close(states[0], hidden[1][:, -1], atol=1e-6, rtol=0)


def test_difference_averages_the_orders_so_the_letter_cancels():
    """Instruction states = prompt + modality part ± letter part; the letter flips with the order."""
    generator = torch.Generator().manual_seed(0)
    n, hidden = 6, 4
    base = {order: torch.randn(n, hidden, generator=generator) for order in ORDERS}
    modality = torch.randn(n, hidden, generator=generator)
    letter = torch.randn(n, hidden, generator=generator) * 10
    sign = {"vision_first": 1.0, "text_first": -1.0}  # the image answer is A in vision_first, B in text_first
    states = {}
    for order in ORDERS:
        states[(3, "none", order)] = base[order]
        states[(3, "image", order)] = base[order] + modality + sign[order] * letter
        states[(3, "text", order)] = base[order] - sign[order] * letter
    mean_rows = torch.tensor([True, True, False, True, False, False])
    tensors, stats = contrastive_tensors(states, [3], mean_rows)
    torch.testing.assert_close(tensors["layer3.diff"], modality)
    torch.testing.assert_close(tensors["layer3.diff.vision_first"], modality + 2 * letter)
    torch.testing.assert_close(tensors["layer3.mean_diff"], modality[mean_rows].mean(0))
    torch.testing.assert_close(tensors["layer3.plain"], (base["vision_first"] + base["text_first"]) / 2)
    expected_norm = torch.cat([base[order][mean_rows] for order in ORDERS]).norm(dim=-1).mean()
    torch.testing.assert_close(tensors["layer3.mean_norm"], expected_norm)
    assert stats[3]["mean_norm"] == pytest.approx(float(expected_norm))
    assert stats[3]["mean_diff_coherence"] == pytest.approx(
        float(modality[mean_rows].mean(0).norm() / modality[mean_rows].norm(dim=-1).mean())
    )


def test_file_holds_every_record_in_index_order(collected, tiny_benchmark_dir):
    records = Benchmark(tiny_benchmark_dir).records
    assert collected.record_ids == records["record_id"].tolist()
    assert collected.index["splits"] == records["split"].tolist()
    assert collected.index["layers"] == [0, 1] and collected.steering_layer == 1
    for layer in (0, 1):
        for kind in ("plain", "plain.vision_first", "plain.text_first", "diff", "diff.vision_first", "diff.text_first"):
            assert collected.get(kind, layer).shape == (len(records), 32)
        assert collected.get("mean_diff", layer).shape == (32,)
        assert collected.get("mean_norm", layer).dim() == 0
    train = collected.split_rows("steer_train")
    assert len(train) == (records["split"] == "steer_train").sum() == 8
    torch.testing.assert_close(collected.get("mean_diff"), collected.get("diff")[train].mean(0))
    torch.testing.assert_close(
        collected.get("mean_norm"),
        torch.cat([collected.get(f"plain.{order}")[train] for order in ORDERS]).norm(dim=-1).mean(),
    )
    assert collected.index["stats"]["1"]["mean_norm"] == pytest.approx(float(collected.get("mean_norm")))


def test_stored_difference_matches_a_direct_reading(collected, tiny_model, tiny_benchmark_dir):
    benchmark = Benchmark(tiny_benchmark_dir)
    record = benchmark.records.iloc[5]
    image = benchmark.image(record["record_id"])
    difference = torch.zeros(32)
    for order in ORDERS:
        for condition, sign in (("image", 1.0), ("text", -1.0)):
            batch = tiny_model.encode([image], [make_question(record, 5, condition, order).prompt])
            difference += sign * last_token_states(tiny_model, batch, [1])[1][0] / 2
    row = collected.rows([record["record_id"]])
    torch.testing.assert_close(collected.get("diff")[row][0], difference, atol=1e-5, rtol=1e-5)
    assert difference.norm() > 1e-3


def test_bad_requests_are_named(collected, tiny_model_dir, tiny_benchmark_dir, tmp_path):
    with pytest.raises(KeyError, match="layer5.plain is not in the activations file"):
        collected.get("plain", 5)
    with pytest.raises(KeyError, match="1 records have no activations"):
        collected.rows(["no-such-record"])
    with pytest.raises(ValueError, match="unknown split 'train'"):
        collected.split_rows("train")
    with pytest.raises(ValueError, match=r"steering_layers \[4\] are beyond the model's 2 decoder layers"):
        collect_activations(
            _settings([4]),
            str(tiny_benchmark_dir),
            str(tiny_model_dir),
            str(tmp_path / "x.safetensors"),
            str(tmp_path / "x.json"),
        )
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(FileNotFoundError, match="run the collect-activations step first"):
        Activations.load(tmp_path / "x.safetensors")
    assert tensor_name(2, "diff") == "layer2.diff"


def test_a_non_finite_hidden_state_stops_the_collection_naming_its_record(tiny_model, tiny_benchmark_dir, monkeypatch):
    from amps.steering import activations

    benchmark = Benchmark(tiny_benchmark_dir)
    records = benchmark.split("steer_train").head(3)
    real = activations.last_token_states

    def poisoned(model, batch, layers):
        states = real(model, batch, layers)
        states[layers[0]][-1, 0] = float("nan")  # the batch's last question
        return states

    monkeypatch.setattr(activations, "last_token_states", poisoned)
    last = activations.contrastive_questions(records)[-1]
    with pytest.raises(FloatingPointError, match=rf"record '{records.iloc[last.record_index]['record_id']}'"):
        activations.collect_states(tiny_model, benchmark, records, [1], batch_size=64)
