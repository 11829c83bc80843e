"""One vocabulary: the schema's enums name exactly the vocabulary's lists, in their order."""

from __future__ import annotations

from amps import vocabulary
from amps.core.config import load_schema
from amps.data import corpus, world

from conftest import REPO


def test_schema_enums_are_the_vocabulary():
    schema = load_schema()["properties"]
    amps = schema["amps"]["properties"]
    assert tuple(schema["steering"]["properties"]["positions"]["enum"]) == vocabulary.POSITIONS
    assert tuple(amps["estimator"]["enum"]) == tuple(vocabulary.ESTIMATORS)
    assert tuple(amps["vector"]["enum"]) == vocabulary.VECTORS
    assert tuple(amps["ablation"]["properties"]["direction"]["enum"]) == tuple(vocabulary.DIRECTIONS)
    assert tuple(schema["mcr"]["properties"]["answer"]["enum"]) == vocabulary.MCR_ANSWERS
    assert tuple(schema["mcr"]["properties"]["text"]["enum"]) == vocabulary.TEXT_POSITIONS
    assert tuple(schema["benchmark"]["properties"]["world"]["properties"]["tasks"]["items"]["enum"]) == tuple(world.TASKS)
    assert tuple(load_schema()["$defs"]["example_mix"]["properties"]) == corpus.EXAMPLE_KINDS


def test_orders_of_the_method_lists():
    """The table lists hold the evaluated methods (and the unsteered reference), each once."""
    assert set(vocabulary.TABLE_METHODS) == {"none", *vocabulary.METHODS}
    assert set(vocabulary.METHOD_LABELS) == set(vocabulary.TABLE_METHODS)
    assert set(vocabulary.SELECTED) == set(vocabulary.CURVE_METHODS) == set(vocabulary.METHODS) - {"instruction"}
    assert set(vocabulary.COMPARED) == set(vocabulary.CURVE_METHODS) - {"amps"}
    assert set(vocabulary.MCR_FAMILIES) < set(vocabulary.ABLATION_FAMILIES)
    # AMPS with β = 0 reuses Learn-to-Steer's answers: the steered evaluation runs it first.
    assert vocabulary.METHODS.index("l2s") < vocabulary.METHODS.index("amps")


def test_the_rules_name_methods_and_families_from_the_vocabulary():
    """The rules take the methods, directions and ablation families from amps.vocabulary, never a list of their own."""
    rules = (REPO / "workflow" / "rules" / "method.smk").read_text()
    assert "from amps.vocabulary import ABLATION_FAMILIES, DIRECTIONS, METHODS" in rules
    every_rule = "".join(path.read_text() for path in (REPO / "workflow" / "rules").glob("*.smk"))
    names = (*vocabulary.METHODS, *vocabulary.ABLATION_FAMILIES, *vocabulary.DIRECTIONS)
    assert not any(f'"{name}", "' in every_rule for name in names)
