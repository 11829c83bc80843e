"""The MCR estimator: zero noise, modality isolation, the split attention, float32 option logits under a
bf16 model, convergence, the Fisher term's scale, noise streams, non-finite values, and shards gathered
against an unsharded run."""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from transformers import DynamicCache, LlavaForConditionalGeneration

from amps.core.io import read_table
from amps.data import prompts, world
from amps.data.benchmark import Benchmark
from amps.mcr import estimates, measure, perturb, prefill, records
from amps.mcr import table as mcr_tables
from amps.mcr.settings import EstimatorSettings
from amps.mcr.steps import GatherMcr, McrShard, gather_mcr, mcr_shard
from amps.models import toy
from amps.models.interface import MultimodalModel
from amps.models.loading import load_model
from amps.models.toy_plan import ToyArchitecture
from amps.report.mcr_summary import summarize
from amps.vocabulary import MODALITIES

from steps import TINY_MODEL, build
from tiny_models import TINY_FAMILIES, build_tiny_model

#: Samples per batched pass where a test does not vary it.
MAX_BATCH = 64


def settings(sigma: float = 0.5, samples: int = 8, fisher: bool = True) -> EstimatorSettings:
    return EstimatorSettings(sigma, samples, "clean", fisher, "context", seed=11)


def streams(seed: int, modalities=MODALITIES) -> dict[str, torch.Generator]:
    return {modality: torch.Generator().manual_seed(seed * 10 + index) for index, modality in enumerate(modalities)}


def prefilled(model: MultimodalModel, order: str = "vision_first") -> prefill.Prefill:
    record = world.make_records(["color"], 1, seed=1)[0]
    image = world.render_record_image("color", record["answer_vision"], record["image_id"], 32)
    return prefill.prefill(
        model, model.encode([image], [prompts.conflict_query(record, order).prompt], contexts=[record["context"]])
    )


@pytest.fixture(scope="module")
def state(tiny_model) -> prefill.Prefill:
    return prefilled(tiny_model)


def test_zero_noise_gives_zero_entropy_and_zero_fisher_term(tiny_model, state):
    scored = perturb.score_samples(tiny_model, state, 0, streams(0), settings(sigma=0.0), MAX_BATCH)
    clean = float(state.option_logits.softmax(dim=-1)[0])
    for modality in MODALITIES:
        # The re-fed last token over the (unperturbed) cache reproduces the prefill's answer.
        assert np.allclose(scored[modality].f, clean, atol=1e-6)
        assert abs(estimates.functional_entropy(scored[modality].f).value) < 1e-12
        assert np.all(scored[modality].fisher == 0.0)


def test_noise_on_one_modality_leaves_the_other_bit_identical(state):
    before = [(keys.clone(), values.clone()) for keys, values in state.layers]
    for modality, other in (("text", "image"), ("image", "text")):
        copies = perturb.ModalityCopies(state, modality)
        own = copies.perturb(perturb.noise_scales(state, modality, 1.0), torch.Generator().manual_seed(5), rows=3)
        other_positions = state.positions[other]
        # The other modality's entries are shared, unperturbed: bit for bit the prefill's.
        assert set(other_positions.tolist()) <= set(copies.shared_positions.tolist())
        where = torch.searchsorted(copies.shared_positions, other_positions)
        for (keys, values), (shared_keys, shared_values) in zip(state.layers, copies.shared):
            assert torch.equal(shared_keys[:, :, where], keys[:, :, other_positions])
            assert torch.equal(shared_values[:, :, where], values[:, :, other_positions])
        for (keys, values), (own_keys, own_values) in zip(state.layers, own):
            assert own_keys.shape == (3, keys.shape[1], len(state.positions[modality]), keys.shape[3])
            assert not torch.equal(own_keys[0], keys[0, :, state.positions[modality]])
            assert not torch.equal(own_values[1], values[0, :, state.positions[modality]])
    for (keys, values), (kept_keys, kept_values) in zip(state.layers, before):
        assert torch.equal(keys, kept_keys) and torch.equal(values, kept_values)


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_split_attention_equals_attention_over_the_whole_perturbed_cache(tiny_arch, kv_heads):
    arch = ToyArchitecture(**{**tiny_arch.__dict__, "text_heads": 4})
    tokenizer = toy.build_tokenizer(list(world.TASKS))
    config = toy.build_model(tokenizer, arch, seed=0).config
    config.text_config.num_key_value_heads = kv_heads
    torch.manual_seed(0)
    model = MultimodalModel(
        LlavaForConditionalGeneration(config).eval(), toy.build_processor(tokenizer, arch), torch.device("cpu")
    )
    state = prefilled(model)
    for modality in MODALITIES:
        copies = perturb.ModalityCopies(state, modality)
        own = copies.perturb(perturb.noise_scales(state, modality, 2.0), torch.Generator().manual_seed(2), rows=3)
        with perturb.scoring_mode(model), torch.no_grad():
            split = perturb.option_log_probability(model, state, copies.shared, own, 0)
        order = torch.cat([state.positions[modality], copies.shared_positions]).argsort()
        whole = [
            (
                torch.cat([keys, shared_keys.expand(3, -1, -1, -1)], dim=2)[:, :, order],
                torch.cat([values, shared_values.expand(3, -1, -1, -1)], dim=2)[:, :, order],
            )
            for (keys, values), (shared_keys, shared_values) in zip(own, copies.shared)
        ]
        with torch.no_grad():
            output = model.model(
                input_ids=state.last_token.expand(3, 1),
                position_ids=state.last_position_ids.expand(3, 1),
                cache=DynamicCache(ddp_cache_data=whole),
                use_cache=True,
            )
        plain = output.logits[:, -1, list(state.option_ids)].log_softmax(dim=-1)[:, 0]
        assert torch.allclose(split, plain, atol=1e-5)
        assert split.std() > 1e-4  # the noise did move f, so the comparison means something
    assert model.model.get_decoder().config._attn_implementation == "sdpa"  # restored after scoring


def test_split_attention_refuses_a_cache(tiny_model, state):
    copies = perturb.ModalityCopies(state, "image")
    own = copies.perturb(perturb.noise_scales(state, "image", 1.0), torch.Generator().manual_seed(0), rows=2)
    cache = DynamicCache(ddp_cache_data=[(keys.clone(), values.clone()) for keys, values in own])
    with perturb.scoring_mode(tiny_model), torch.no_grad(), pytest.raises(ValueError, match="not from a cache"):
        tiny_model.model.model(
            input_ids=state.last_token.expand(2, 1),
            position_ids=state.last_position_ids.expand(2, 1),
            cache=cache,
            use_cache=True,
            mcr_shared=copies.shared,
            mcr_own=own,
        )


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_every_family_reproduces_its_clean_answer_from_the_cache(family, tmp_path):
    # LLaVA-1.5 (BPE tokenizer), Qwen2-VL and Qwen2.5-VL (M-RoPE positions from the image grid).
    model = load_model(build_tiny_model(family, tmp_path / family), device="cpu", dtype="float32")
    state = prefilled(model)
    assert state.last_position_ids.shape == ((3, 1, 1) if family.startswith("qwen") else (1, 1))
    scored = perturb.score_samples(model, state, 0, streams(1), settings(sigma=0.0, samples=2), MAX_BATCH)
    clean = float(state.option_logits.softmax(dim=-1)[0])
    for modality in MODALITIES:
        assert np.allclose(scored[modality].f, clean, atol=1e-6)
    noisy = perturb.score_samples(model, state, 0, streams(1), settings(sigma=2.0, samples=4), MAX_BATCH)
    assert all(noisy[modality].f.std() > 0 for modality in MODALITIES)
    # A modality hidden from the fed token (the answer-position ablation) moves the answer on every family.
    with perturb.scoring_mode(model), torch.no_grad():
        for modality in MODALITIES:
            copies = perturb.ModalityCopies(state, modality)
            hidden = perturb.option_log_probability(model, state, copies.shared, copies.hidden(), 0).exp()
            assert abs(float(hidden[0]) - clean) > 1e-5, modality


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_option_logits_are_the_float32_product_of_the_final_hidden_state_and_two_output_rows(family, tmp_path):
    model = load_model(build_tiny_model(family, tmp_path / family), device="cpu", dtype="float32")
    record = world.make_records(["color"], 1, seed=1)[0]
    image = world.render_record_image("color", record["answer_vision"], record["image_id"], 32)
    batch = model.encode([image], [prompts.conflict_query(record, "vision_first").prompt])
    inputs = dict(batch.inputs, position_ids=prefill.prompt_position_ids(model, batch))
    ids = model.option_token_ids()
    with torch.no_grad():
        full = model.model(**inputs, use_cache=True)
        logits, cache = prefill.option_logits_float32(model, ids, **inputs, use_cache=True)
    # Float32 model: the same numbers as the whole output layer's (so the hidden state is the normed one).
    assert logits.dtype == torch.float32 and logits.shape == (1, 2)
    assert torch.allclose(logits, full.logits[:, -1, list(ids)], atol=1e-5)
    assert cache.get_seq_length() == batch.input_ids.shape[1]
    # An output layer with a bias adds the options' two entries.
    head = model.model.get_output_embeddings()
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[list(ids)] = torch.tensor([3.0, -2.0])
    model.model.set_output_embeddings(biased)
    with torch.no_grad():
        shifted, _ = prefill.option_logits_float32(model, ids, **inputs)
    assert torch.allclose(shifted - logits, torch.tensor([[3.0, -2.0]]), atol=1e-5)


def large_letter_logit_model(tiny_arch, benchmark: Benchmark, seed: int = 2) -> MultimodalModel:
    """The toy LLaVA with a trained model's letter logits: A and B at 16-32, one to a few units apart.

    The output rows of A and B (untied from the embeddings) get a large shared part along the mean
    final hidden state of the records' last prompt positions, plus a small random difference.
    """
    model = toy.build_toy(tiny_arch, list(world.TASKS), seed=0)
    net = model.model
    with torch.no_grad():
        hidden = torch.stack(
            [
                net.model(
                    **model.encode(
                        [benchmark.image(record["record_id"])], [prompts.conflict_query(record, "vision_first").prompt]
                    ).inputs
                ).last_hidden_state[0, -1]
                for _, record in benchmark.records.iterrows()
            ]
        )
    shared = hidden.mean(dim=0)
    weight = net.lm_head.weight.detach().clone()
    difference = torch.randn(2, weight.shape[1], generator=torch.Generator().manual_seed(seed)) / weight.shape[1] ** 0.5
    weight[list(model.option_token_ids())] = 26.0 * shared / (shared @ shared) + 2.0 * difference
    net.lm_head.weight = torch.nn.Parameter(weight)  # untied: the letters' input embeddings stay as they were
    return model


def test_a_bf16_model_ranks_records_like_its_float32_copy(tiny_arch, tiny_benchmark_dir):
    # In bf16, logits of 16-32 are 0.125 apart: letter logits rounded to bf16 add noise to f of the
    # order of the perturbation's own effect and inflate the entropy (here: Spearman 0.56, image
    # scores x4.8). Float32 option logits leave only the bf16 network's own error (0.995, x0.99).
    # bf16 and float32 noise draws from one seed differ, hence the many samples.
    benchmark = Benchmark(tiny_benchmark_dir)
    model = large_letter_logit_model(tiny_arch, benchmark)
    bf16 = MultimodalModel(copy.deepcopy(model.model).to(torch.bfloat16), model.processor, torch.device("cpu"))
    estimator = EstimatorSettings(0.5, 256, "clean", False, "context", seed=7)
    rows = {
        name: pd.DataFrame(
            [records.estimate_record(each, benchmark, record, estimator, 256) for _, record in benchmark.records.iterrows()]
        )
        for name, each in (("float32", model), ("bf16", bf16))
    }
    # The setup is what it should be: letters at 16-32, a few units apart at most (f not saturated).
    record = benchmark.records.iloc[0]
    state = prefill.prefill(
        model,
        model.encode(
            [benchmark.image(record["record_id"])],
            [prompts.conflict_query(record, "text_first").prompt],
            contexts=[record["context"]],
        ),
    )
    assert state.option_logits.min() > 16 and state.option_logits.max() < 32
    assert len(rows["float32"]) == 20 and rows["float32"][["clean_p_vision_first", "clean_p_text_first"]].lt(0.99).all().all()
    assert spearmanr(rows["bf16"]["mcr"], rows["float32"]["mcr"]).statistic >= 0.98
    ratio = rows["bf16"]["mcs_image"].median() / rows["float32"]["mcs_image"].median()
    assert 0.8 < ratio < 1.25


@pytest.mark.parametrize("max_batch", [1, 3, 32])
def test_samples_do_not_depend_on_how_passes_are_cut(tiny_model, state, max_batch):
    whole = perturb.score_samples(tiny_model, state, 1, streams(3), settings(samples=10), 64)
    cut = perturb.score_samples(tiny_model, state, 1, streams(3), settings(samples=10), max_batch)
    for modality in MODALITIES:
        assert np.allclose(whole[modality].f, cut[modality].f, rtol=0, atol=1e-7)
        assert np.allclose(whole[modality].fisher, cut[modality].fisher, rtol=1e-4, atol=0)
        assert whole[modality].f.std() > 1e-4  # distinct samples: a shifted or repeated draw would not match


def test_standard_error_falls_as_one_over_root_n_and_matches_the_spread(tiny_model, state):
    def entropies(samples: int, seeds: range) -> list[estimates.Estimate]:
        runs = [
            perturb.score_samples(tiny_model, state, 0, streams(seed, ["text"]), settings(samples=samples), MAX_BATCH)
            for seed in seeds
        ]
        return [estimates.functional_entropy(run["text"].f) for run in runs]

    small, large = entropies(16, range(12)), entropies(256, range(12, 16))
    se_small = np.mean([estimate.se for estimate in small])
    se_large = np.mean([estimate.se for estimate in large])
    assert 3.0 < se_small / se_large < 5.5  # sqrt(256 / 16) = 4
    # The reported error describes the real spread of independent estimates.
    assert 0.5 < np.std([estimate.value for estimate in small], ddof=1) / se_small < 1.8
    # Both sample sizes estimate the same quantity.
    mean_small, mean_large = np.mean([e.value for e in small]), np.mean([e.value for e in large])
    assert abs(mean_small - mean_large) < 3 * math.hypot(se_small / math.sqrt(12), se_large / 2)


def test_fisher_term_bounds_the_entropy_and_is_tight_for_small_noise(tiny_model, state):
    # Gaussian log-Sobolev: Ent(f) <= E[|grad f|^2 / f] / 2, with equality as f becomes linear in the noise.
    scored = perturb.score_samples(tiny_model, state, 0, streams(7), settings(sigma=0.05, samples=128), MAX_BATCH)
    for modality in MODALITIES:
        entropy = estimates.functional_entropy(scored[modality].f)
        half_fisher = estimates.sample_mean(scored[modality].fisher).value / 2
        assert entropy.value <= half_fisher + 3 * entropy.se
        # Near-equality: a Fisher term off by the noise scale (sigma * spread) would miss by orders of magnitude.
        assert abs(entropy.value - half_fisher) < 3 * entropy.se + 0.05 * half_fisher


def test_functional_entropy_matches_its_definition_and_rejects_non_finite():
    f = np.array([0.2, 0.9, 0.5, 0.7, 0.05])
    expected = np.mean(f * np.log(f)) - f.mean() * np.log(f.mean())
    assert estimates.functional_entropy(f).value == pytest.approx(expected, rel=1e-12)
    assert math.isnan(estimates.functional_entropy(np.array([0.5, np.nan, 0.4])).value)
    assert estimates.functional_entropy(np.array([0.0, 0.0])).value == 0.0
    with pytest.raises(ValueError, match="at least 2 samples"):
        estimates.functional_entropy(np.array([0.3]))


def test_ratio_and_order_average_propagate_errors():
    ratio = estimates.contribution_ratio(estimates.Estimate(3.0, 0.3), estimates.Estimate(1.0, 0.1))
    assert ratio.value == 0.75
    assert ratio.se == pytest.approx(math.sqrt((1.0 * 0.3) ** 2 + (3.0 * 0.1) ** 2) / 16)
    assert math.isnan(estimates.contribution_ratio(estimates.Estimate(0.0, 0.0), estimates.Estimate(0.0, 0.0)).value)
    mean = estimates.order_average([estimates.Estimate(1.0, 0.3), estimates.Estimate(3.0, 0.4)])
    assert (mean.value, mean.se) == (2.0, pytest.approx(0.25))


def test_a_pass_that_runs_out_of_gpu_memory_is_retried_smaller_with_the_same_draws(tiny_model, state, monkeypatch, caplog):
    expected = perturb.score_samples(tiny_model, state, 1, streams(3), settings(samples=10), 2)
    real = perturb.option_log_probability

    def out_of_memory_above_two_rows(model, state, shared, own, target):
        if own[0][0].shape[0] > 2:  # after the pass has drawn its noise: the retry must rewind the stream
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, state, shared, own, target)

    monkeypatch.setattr(perturb, "option_log_probability", out_of_memory_above_two_rows)
    with caplog.at_level(logging.WARNING, logger="amps.core.devices"):
        retried = perturb.score_samples(tiny_model, state, 1, streams(3), settings(samples=10), 8)
    for modality in MODALITIES:
        assert np.array_equal(retried[modality].f, expected[modality].f)
        assert np.array_equal(retried[modality].fisher, expected[modality].fisher)
    assert [record.getMessage() for record in caplog.records] == [
        f"MCR {modality} samples: CUDA out of memory in a pass of {rows} rows; retrying with {rows // 2} rows per pass"
        for modality in MODALITIES
        for rows in (8, 4)
    ]


def test_the_default_stream_keeps_the_seeds_and_a_named_stream_draws_independently(tiny_model, tiny_benchmark_dir):
    # The seed derivation before streams existed: the main run's numbers stay as they were.
    assert perturb.stream_seed(11, "color-0003", "vision_first", "image") == 4669388396174077262
    assert perturb.stream_seed(0, "r", "text_first", "text", stream="") == 5855743027280675077
    assert settings().stream == ""
    seeds = {stream: perturb.stream_seed(11, "color-0003", "vision_first", "image", stream) for stream in ("", "a", "b")}
    assert len(set(seeds.values())) == 3
    benchmark = Benchmark(tiny_benchmark_dir)
    record = benchmark.records.iloc[2]
    base = settings(samples=4, fisher=False)
    rows = {
        stream: records.estimate_record(tiny_model, benchmark, record, replace(base, stream=stream), MAX_BATCH)
        for stream in ("", "a", "b")
    }
    pd.testing.assert_series_equal(
        pd.Series(rows[""]), pd.Series(records.estimate_record(tiny_model, benchmark, record, base, MAX_BATCH))
    )
    for name in ("mcs_text_vision_first", "mcs_image_vision_first", "mcs_text_text_first", "mcs_image_text_first"):
        assert len({rows[stream][name] for stream in rows}) == 3, name
    # The clean answers do not depend on the noise.
    assert rows["a"]["clean_p_vision_first"] == rows["b"]["clean_p_vision_first"] == rows[""]["clean_p_vision_first"]


def test_a_non_finite_sample_is_reported_with_its_record(tiny_model, tiny_benchmark_dir, monkeypatch, caplog):
    benchmark = Benchmark(tiny_benchmark_dir)
    record = benchmark.records.iloc[0]
    real = perturb.score_samples

    def poisoned(*args, **kwargs):
        scored = real(*args, **kwargs)
        scored["image"].f[2] = np.nan
        return scored

    monkeypatch.setattr(measure, "score_samples", poisoned)
    row = records.estimate_record(tiny_model, benchmark, record, settings(samples=4), MAX_BATCH)
    assert "image: 1 of 4 samples of f non-finite" in row["problem"]
    assert math.isnan(row["mcs_image"]) and math.isnan(row["mcr"]) and math.isfinite(row["mcs_text"])
    assert record["record_id"] in caplog.text


def test_without_the_fisher_term_its_columns_are_nan_and_the_rest_is_unchanged(tiny_model, tiny_benchmark_dir):
    benchmark = Benchmark(tiny_benchmark_dir)
    record = benchmark.records.iloc[1]
    both = records.estimate_record(tiny_model, benchmark, record, settings(samples=4), MAX_BATCH)
    entropy_only = records.estimate_record(tiny_model, benchmark, record, settings(samples=4, fisher=False), MAX_BATCH)
    assert math.isnan(entropy_only["fisher_text"]) and math.isnan(entropy_only["mcr_fisher"])
    assert entropy_only["problem"] == "" and both["problem"] == ""
    assert entropy_only["mcr"] == pytest.approx(both["mcr"], abs=1e-6)
    assert set(both) == set(mcr_tables.COLUMNS) - {"record_index"}


def run_shards(model_dir, benchmark_dir, folder, shards: int, samples: int = 4) -> pd.DataFrame:
    paths = []
    for shard in range(shards):
        path = folder / f"shard-{shard}-of-{shards}.parquet"
        changes = {"models": {"tiny": TINY_MODEL}, "seed": 3, "mcr": {"sigma": 0.5, "samples": samples, "shards": shards}}
        mcr_shard(build(McrShard, changes, model="tiny", shard=shard), str(benchmark_dir), str(model_dir), str(path), "64")
        paths.append(str(path))
    output = folder / f"gathered-{shards}.parquet"
    gather_mcr(GatherMcr(shards), ",".join(paths), str(benchmark_dir), str(output))
    return read_table(output)


def test_gathered_shards_equal_an_unsharded_run_exactly(tiny_model_dir, tiny_benchmark_dir, tmp_path):
    whole = run_shards(tiny_model_dir, tiny_benchmark_dir, tmp_path, shards=1)
    sharded = run_shards(tiny_model_dir, tiny_benchmark_dir, tmp_path, shards=3)
    pd.testing.assert_frame_equal(whole, sharded, check_exact=True)
    records = Benchmark(tiny_benchmark_dir).records
    assert whole["record_id"].tolist() == records["record_id"].tolist()
    assert set(whole["split"]) == {"steer_train", "validation", "test"}
    assert (whole["problem"] == "").all()
    assert whole["mcr"].between(0, 1).all() and whole["mcr_fisher"].between(0, 1).all()
    assert (whole["mcs_text_se"] > 0).all() and whole["clean_choice_vision_first"].isin(["vision", "text"]).all()


def shard_table(indices: list[int], record_ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({column: [0.0] * len(indices) for column in mcr_tables.COLUMNS}).assign(
        record_index=indices, record_id=[record_ids[i] for i in indices], problem=""
    )


@pytest.mark.parametrize(
    ("shards", "message"),
    [
        ([[0, 1], [3, 4, 5]], r"missing records at indices \[2\]"),
        ([[0, 1, 2, 2], [3, 4, 5]], r"duplicated records at indices \[2\]"),
        ([[0, 1, 2, 3], [3, 4, 5]], r"records at indices \[3\] belong to other shards"),
    ],
)
def test_gather_fails_on_missing_duplicated_or_overlapping_records(shards, message):
    record_ids = [f"r{i}" for i in range(6)]
    tables = [shard_table(indices, record_ids) for indices in shards]
    with pytest.raises(ValueError, match=message):
        mcr_tables.gather_shards(tables, ["a", "b"], record_ids)
    good = mcr_tables.gather_shards(
        [shard_table([0, 1, 2], record_ids), shard_table([3, 4, 5], record_ids)], ["a", "b"], record_ids
    )
    assert good["record_id"].tolist() == record_ids


def test_gather_fails_on_a_record_the_benchmark_does_not_have_there():
    record_ids = [f"r{i}" for i in range(4)]
    stale = shard_table([0, 1], record_ids).assign(record_id=["r0", "other"])
    with pytest.raises(ValueError, match="record 'other' at index 1"):
        mcr_tables.gather_shards([stale, shard_table([2, 3], record_ids)], ["a", "b"], record_ids)


def test_shard_ranges_are_disjoint_and_cover_every_record():
    for count, shards in ((10, 3), (2, 5), (0, 2)):
        covered = [index for shard in range(shards) for index in mcr_tables.shard_range(count, shard, shards)]
        assert covered == list(range(count))
    with pytest.raises(ValueError, match="shard 3 is out of range for 3 shards"):
        mcr_tables.shard_range(10, 3, 3)


def test_summary_counts_problems_and_leaves_them_out():
    table = pd.DataFrame(
        {
            "record_id": ["a", "b", "c"],
            "task": ["color", "color", "count"],
            "split": ["test", "test", "validation"],
            "mcs_text": [2.0, np.nan, 1.0],
            "mcs_image": [2.0, np.nan, 3.0],
            "mcr": [0.5, np.nan, 0.25],
            "mcr_se": [0.1, np.nan, 0.1],
            "mcr_fisher": [0.4, np.nan, 0.3],
            "clean_choice_vision_first": ["vision", "text", "text"],
            "clean_choice_text_first": ["text", "text", "text"],
            "ablation_ratio": [0.9, 0.1, np.nan],
            "answer_ablation_ratio": [0.2, 0.3, 0.4],
            "problem": ["", "text_first image: 1 of 4 samples of f non-finite", ""],
        }
    )
    summary = summarize({"m": table}).set_index(["split", "task"])
    whole = summary.loc[("all", "all")]
    assert (whole["n"], whole["n_problem"], whole["mcr_mean"]) == (3, 1, pytest.approx(0.375))
    assert whole["ablation_ratio_median"] == 0.9 and math.isnan(whole["mcr_ablation_spearman"])  # too few records
    assert summary.loc[("test", "color"), "n_problem"] == 1
    assert summary.loc[("validation", "count"), "mcr_median"] == 0.25


def test_the_summary_sets_the_mcr_beside_both_ablations():
    rng = np.random.default_rng(0)
    mcr = rng.random(40)
    table = pd.DataFrame(
        {
            "record_id": [f"r{index}" for index in range(40)],
            "task": "color",
            "split": "test",
            "mcs_text": mcr,
            "mcs_image": 1 - mcr,
            "mcr": mcr,
            "mcr_se": 0.01,
            "mcr_fisher": mcr,
            "clean_choice_vision_first": "vision",
            "clean_choice_text_first": "text",
            "ablation_ratio": np.where(np.arange(40) == 3, np.nan, mcr**2),
            "answer_ablation_ratio": 1 - mcr,
            "problem": "",
        }
    )
    tracking = summarize({"m": table}).set_index(["split", "task"]).loc[("all", "all")]
    assert tracking["mcr_ablation_spearman"] == pytest.approx(1.0)
    assert tracking["mcr_answer_ablation_spearman"] == pytest.approx(-1.0)
    table["ablation_ratio"] = 1 - table["ablation_ratio"]
    assert summarize({"m": table}).loc[0, "mcr_ablation_spearman"] == pytest.approx(-1.0)
