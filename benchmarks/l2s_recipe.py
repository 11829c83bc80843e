"""Learn-to-Steer as amps trains it vs the published recipe written out plainly vs amps's earlier module, in one run.

On a finished default run (``make run``: results/offline-default), for one toy model and direction,
three ways of training the Learn-to-Steer module on exactly the pipeline's steering-train
activations are compared by what they do when steering, with each module's strength chosen on its
own validation outputs (largest record-level shift with collapse within amps.max_collapse, on
amps.strengths) and then measured on the test split:

* ``amps default``: :func:`amps.method.steerer.train_steerer` with the config's recipe (the published one);
* ``published, plain``: the published recipe written out here independently (torch DataLoader,
  transformers' cosine schedule with warmup, SVD-initialised decoder, MSE + L1 - ramped cosine,
  Adam 5e-5, 100 epochs, the best validation epoch);
* ``amps before``: the module amps trained before (hidden 32, standardised inputs, MSE + 0.1·(1 -
  cosine), full-batch Adam 0.01, early stopping with patience 60), expressed as a recipe.

Printed per recipe and seed: validation cosine of the predictions, chosen strength, validation and
test shift and collapse, and the largest test shift within the collapse bound over the grid.

Usage: python benchmarks/l2s_recipe.py [--run results/offline-default] [--model toy-l] [--direction to_vision] [--seeds 3]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd
import torch
from transformers import get_cosine_schedule_with_warmup

from amps.core.config import load_config
from amps.data.benchmark import Benchmark
from amps.mcr.table import load_mcr
from amps.method import scaling
from amps.method.methods import ModuleSteering
from amps.method.recipe import ModuleRecipe
from amps.method.steerer import SteererConfig, train_steerer
from amps.method.steering_module import SteeringModule
from amps.method.steps import SelectAmps, TrainSteerers
from amps.method.vectors import prompt_set, record_vectors
from amps.metrics import shift_and_collapse
from amps.models.asking import QuestionBatches, answer, evaluation_questions
from amps.models.loading import load_model
from amps.steering.activations import Activations
from amps.vocabulary import DIRECTIONS

REPO = Path(__file__).resolve().parent.parent
BEFORE = ModuleRecipe(
    width=32,
    standardize_inputs=True,
    init="default",
    mse_weight=1.0,
    l1_weight=0.0,
    cosine_weight=0.1,
    cosine_ramp_epochs=0,
    validation_cosine_weight=0.1,
    optimizer="adam",
    learning_rate=0.01,
    weight_decay=1e-4,
    batch_size=1_000_000,
    epochs=600,
    schedule="constant",
    warmup_epochs=0,
    patience=60,
)


class PlainSteeringNet(torch.nn.Module):
    """Linear -> Tanh -> Linear (no decoder bias), as published."""

    def __init__(self, hidden: int, width: int):
        super().__init__()
        self.encoder = torch.nn.Linear(hidden, width)
        self.decoder = torch.nn.Linear(width, hidden, bias=False)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.tanh(self.encoder(states)))


def published_plain(train_x, train_y, val_x, val_y, width: int, seed: int) -> torch.nn.Module:
    """The published recipe, written out with torch's DataLoader and transformers' scheduler."""
    torch.manual_seed(seed)
    net = PlainSteeringNet(train_x.shape[1], width)
    centred = train_y - train_y.mean(0)
    _u, _s, directions = torch.linalg.svd(centred, full_matrices=False)
    count = min(width, directions.shape[0])
    with torch.no_grad():
        net.decoder.weight[:, :count] = directions[:count].T
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(train_x, train_y),
        batch_size=64,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-5)
    schedule = get_cosine_schedule_with_warmup(optimizer, 50 * len(loader), 100 * len(loader))

    def loss_of(predicted, target, cosine_weight):
        per_sample = ((predicted - target) ** 2).mean(1) + (predicted - target).abs().mean(1)
        return (per_sample - cosine_weight * torch.nn.functional.cosine_similarity(predicted, target, dim=1)).mean()

    best, best_state = math.inf, None
    for epoch in range(100):
        net.train()
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss_of(net(inputs), targets, min(1.0, epoch / 100) * 0.1).backward()
            optimizer.step()
            schedule.step()
        net.eval()
        with torch.no_grad():
            validation = float(loss_of(net(val_x), val_y, 0.1))
        if validation < best:
            best, best_state = validation, {name: value.clone() for name, value in net.state_dict().items()}
    net.load_state_dict(best_state)
    return net.eval()


def cosine(module: torch.nn.Module, states: torch.Tensor, targets: torch.Tensor) -> float:
    with torch.no_grad():
        return float(torch.nn.functional.cosine_similarity(module(states), targets, dim=1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(REPO / "results" / "offline-default"))
    parser.add_argument("--model", default="toy-l")
    parser.add_argument("--direction", default="to_vision", choices=sorted(DIRECTIONS))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(REPO / "config" / "config.yaml")
    spec = config["models"][args.model]
    amps = SelectAmps.from_config(config, args.model)
    recipe = TrainSteerers.from_config(config, args.model).recipe
    run = Path(args.run)
    benchmark = Benchmark(run / "benchmark")
    stored = Activations.load(run / "activations" / f"{args.model}.safetensors")
    mcr = load_mcr(str(run / "mcr" / f"{args.model}.parquet"), amps.grid.estimator)
    layer = spec["steering_layers"][0]
    sign, target = DIRECTIONS[args.direction]
    train = prompt_set(stored, layer, amps.grid.vector, benchmark.split("steer_train"), mcr)
    validation = prompt_set(stored, layer, amps.grid.vector, benchmark.split("validation"), mcr)
    model = load_model(run / "models" / args.model, device="cpu", dtype="float32")
    splits = {}
    for split in ("validation", "test"):
        records = benchmark.split(split)
        encoded = QuestionBatches(
            model, benchmark, records, evaluation_questions(records, "conflict"), spec["batch_size"], keep=True
        )
        splits[split] = (
            encoded,
            answer(model, encoded, config["evaluation"]["max_new_tokens"], desc=f"{split} unsteered"),
        )
    scale = record_vectors(stored, layer, benchmark.split("test")["record_id"].tolist()).prompt_scale
    identity = scaling.from_units(train.mcr, 0.0, 0.5, amps.grid.max_factor)
    train_y, val_y = (
        sign * identity.targets(train.vectors, train.mcr),
        sign * identity.targets(validation.vectors, validation.mcr),
    )

    def measure(module: torch.nn.Module, split: str, strength: float) -> tuple[float, float]:
        config_ = SteererConfig(model.hidden_size, layer, layer, "l2s", args.direction, amps.grid.vector, 0.0, 0.0, 0, recipe)
        encoded, unsteered = splits[split]
        answers = answer(
            model,
            encoded,
            config["evaluation"]["max_new_tokens"],
            ModuleSteering(model, SteeringModule(module, config_, scale, amps.positions)).context(strength),
        )
        return shift_and_collapse(answers, unsteered, target)

    rows = []
    for seed in range(args.seeds):
        modules = {
            "amps default": train_steerer(train.states, train_y, validation.states, val_y, recipe, config["seed"] + seed)[0],
            "published, plain": published_plain(
                train.states, train_y, validation.states, val_y, recipe.width, config["seed"] + seed
            ),
            "amps before": train_steerer(train.states, train_y, validation.states, val_y, BEFORE, config["seed"] + seed)[0],
        }
        for name, module in modules.items():
            scan = pd.DataFrame(
                [{"strength": s, **dict(zip(("shift", "collapse"), measure(module, "validation", s)))} for s in amps.strengths]
            )
            best, _within = scaling.choose(scan, amps.max_collapse)
            strength = float(scan["strength"].iloc[best])
            test = pd.DataFrame(
                [{"strength": s, **dict(zip(("shift", "collapse"), measure(module, "test", s)))} for s in amps.strengths]
            )
            at = test[test["strength"] == strength].iloc[0]
            within = test[test["collapse"] <= amps.max_collapse + 1e-12]["shift"].max()
            rows.append(
                {
                    "recipe": name,
                    "seed": seed,
                    "validation_cosine": cosine(module, validation.states, val_y),
                    "strength": strength,
                    "validation_shift": scan["shift"].iloc[best],
                    "validation_collapse": scan["collapse"].iloc[best],
                    "test_shift": at["shift"],
                    "test_collapse": at["collapse"],
                    "test_best_shift_within_bound": max(0.0, within),
                }
            )
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(f"{args.model}, {args.direction}; strength chosen on each module's own validation scan (bound {amps.max_collapse})")
    print(table.to_string(index=False, float_format=lambda value: f"{value:.3f}"))
    summary = table.groupby("recipe", sort=False)[
        ["validation_cosine", "test_shift", "test_collapse", "test_best_shift_within_bound"]
    ].agg(["mean", "std"])
    print(summary.to_string(float_format=lambda value: f"{value:.3f}"))
    ours = table[table["recipe"] == "amps default"]["test_shift"].mean()
    published = table[table["recipe"] == "published, plain"]["test_shift"].mean()
    print(
        f"amps default vs published recipe (test shift at the validation choice): {ours:.3f} vs {published:.3f}"
        f" -> {'matches or beats' if ours >= published - 0.02 else 'BELOW'}"
    )


if __name__ == "__main__":
    main()
