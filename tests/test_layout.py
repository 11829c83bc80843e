"""The layout holds: one name per stage (rule = subcommand = function, its settings class beside it), table and
figure steps without torch, no import cycles, no module over 400 lines."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

from amps.cli import COMMANDS, function_name, is_tool, resolve, settings_class
from amps.core.settings import Step

from conftest import REPO

PACKAGE = REPO / "amps"
RULES = REPO / "workflow" / "rules"


def rule_commands() -> dict[str, tuple[str, str]]:
    """Each rule of the workflow with its rule file and the ``amps`` command line of its shell."""
    rules = {}
    for path in sorted(RULES.glob("*.smk")):
        for block in re.split(r"\n(?=rule )", path.read_text()):
            match = re.match(r"rule (\w+):", block.strip())
            if match and "shell:" in block:
                shell = block.split("shell:", 1)[1]
                rules[match.group(1)] = (path.stem, " ".join(re.findall(r'"([^"]*)"', shell)))
    return rules


def test_every_rule_runs_its_own_subcommand_with_the_functions_parameters():
    rules = rule_commands()
    assert rules, "no rule found"
    steps = {name for name, (module, *_rest) in COMMANDS.items() if not is_tool(module)}
    assert {rule.replace("_", "-") for rule in rules} == steps
    for rule, (rule_file, shell) in rules.items():
        command = rule.replace("_", "-")
        assert shell.startswith(f"amps {command} "), (rule, shell)
        module, _help, flags = COMMANDS[command]
        used = set(re.findall(r"(--[a-z-]+) ", shell)) - {"--settings"}
        assert used == {flag for flag, _ in flags}, rule
        # The rule file names the subpackage: workflow/rules/method.smk runs amps.method.
        assert module.split(".")[1] == rule_file, (rule, module)


def test_every_subcommand_resolves_to_its_function_and_its_flags_are_its_parameters():
    for command, (module, _help, flags) in COMMANDS.items():
        function = resolve(command)
        assert function.__name__ == function_name(command) and function.__module__ == module, command
        parameters = list(inspect.signature(function).parameters)
        expected = [flag.lstrip("-").replace("-", "_") for flag, _ in flags]
        if is_tool(module):
            assert parameters == expected, command
        else:
            assert parameters == ["settings", *expected], command
            step = settings_class(command)
            assert issubclass(step, Step) and step.__module__ == module, command
            assert inspect.signature(function).parameters["settings"].annotation == step.__name__, command


def python_modules() -> list[str]:
    return sorted(".".join(path.relative_to(REPO).with_suffix("").parts) for path in PACKAGE.rglob("*.py"))


def test_table_figure_and_settings_modules_start_without_torch():
    """The Snakefile imports every steps module and table and figure jobs import the report: none may import torch
    or transformers (about 6 s of every job's start-up, and of every Snakemake process)."""
    torch_free = [
        name
        for name in python_modules()
        if name.endswith(("steps", "__init__"))
        or name.startswith(("amps.report.", "amps.core."))
        or name
        in (
            "amps.cli",
            "amps.vocabulary",
            "amps.metrics",
            "amps.statistics",
            "amps.mcr.settings",
            "amps.mcr.table",
            "amps.method.curves",
            "amps.method.recipe",
            "amps.models.toy_plan",
            "amps.data.benchmark",
            "amps.data.prompts",
            "amps.data.world",
            "amps.data.corpus",
        )
    ]
    loaded_check = "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    code = f"import sys\nfor m in {torch_free!r}: __import__(m)\n{loaded_check}"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", f"{torch_free} import {loaded}"


def is_module(name: str) -> bool:
    """Whether ``name`` is a module file of the package (not a package or a name inside a module)."""
    return (REPO / Path(*name.split("."))).with_suffix(".py").is_file()


def runtime_nodes(tree: ast.AST):
    """Every node that can run: ``if TYPE_CHECKING:`` blocks (annotations only) are left out."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            continue
        yield node
        yield from runtime_nodes(node)


def imports_of(path: Path) -> set[str]:
    """The amps modules a module imports when it runs: at module level or inside functions."""
    found = set()
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("amps"):
            found.update(
                f"{node.module}.{alias.name}" if is_module(f"{node.module}.{alias.name}") else node.module for alias in node.names
            )
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("amps"))
    return found


def test_no_import_cycles():
    """Lazy imports count: a step's settings module may import its engine only where no path leads back."""
    graph = {name: imports_of(REPO / Path(*name.split(".")).with_suffix(".py")) - {name} for name in python_modules()}
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        assert state.get(name) != "open", "import cycle: " + " -> ".join([*path, name])
        state[name] = "open"
        for target in sorted(graph.get(name, ())):
            visit(target, [*path, name])
        state[name] = "done"

    for name in graph:
        visit(name, [])


def test_no_module_is_over_400_lines():
    long = {
        path.relative_to(REPO).as_posix(): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > 400
    }
    assert not long, long


def test_the_readme_layout_table_is_true():
    """Each stage of the README's table: its rule file holds exactly its rules, its subpackage their functions."""
    readme = (REPO / "README.md").read_text()
    table = readme.split("| stage | rule file | subpackage |", 1)[1].split("\n\n", 1)[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    rules = rule_commands()
    listed: set[str] = set()
    for _stage, rule_files, subpackage, names in rows:
        package = subpackage.strip("`").rstrip("/")
        assert (REPO / package / "__init__.py").is_file(), package
        functions = re.findall(r"`(\w+)`", names)
        for function in functions:
            command = function.replace("_", "-")
            assert command in COMMANDS, function
            assert COMMANDS[command][0].startswith(package.replace("/", ".") + "."), (function, package)
        smk = [REPO / path for path in re.findall(r"`([\w/.]+\.smk)`", rule_files)]
        in_files = {rule for rule, (rule_file, _shell) in rules.items() if any(path.stem == rule_file for path in smk)}
        assert in_files == ({f for f in functions if f in rules}), rule_files
        listed |= set(functions)
    assert set(rules) <= listed, sorted(set(rules) - listed)
