"""The code layout the README's "Code layout" describes: stage subpackages whose imports run one way."""

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = [
    "store",
    "data",
    "training",
    "inference",
    "evaluation",
    "report",
    "tracking",
]  # each imports only those before
LIGHT = {"benchmark", "benchmark.errors", "benchmark.lazy"}  # what every stage may import: UsageError, faces


def imports(path: Path) -> set[str]:
    """The benchmark modules ``path`` imports, anywhere in it (lazy imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("benchmark"):
            found |= {f"{node.module}.{a.name}" if node.module == "benchmark" else node.module for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("benchmark")}
    return {m.removesuffix(".UsageError") for m in found}


def stage(module: str) -> int | None:
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 1 and parts[1] in STAGES else None


def test_every_stage_imports_only_the_stages_before_it_and_nothing_on_top():
    wrong = []
    for path in sorted((ROOT / "benchmark").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if (own := stage(module)) is None:
            continue
        for target in imports(path) - LIGHT:
            if stage(target) is None or stage(target) > own:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_driver_imports_the_stages_not_their_modules():
    """runner.py takes each stage's public face (its package), not two dozen modules."""
    modules = imports(ROOT / "benchmark" / "runner.py") - LIGHT
    deep = sorted(m for m in modules if stage(m) is not None and m.count(".") > 1)
    assert not deep, deep
    assert {m.split(".")[1] for m in modules if stage(m) is not None} == set(STAGES)


@pytest.mark.parametrize("name", STAGES)
def test_every_name_of_a_stages_face_is_found_in_its_module(name):
    package = importlib.import_module(f"benchmark.{name}")
    missing = [n for n in getattr(package, "__all__", []) if not hasattr(package, n)]
    assert not missing, missing


def names_imported(path: Path, module: str) -> set[str]:
    return {
        a.name
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module == module
        for a in node.names
    }


def test_the_report_reads_its_numbers_and_computes_no_metric():
    """The held-out and out-of-fold tables come from results.json (evaluation writes them at publication):
    the report's sections import the metrics module's constants only, and no held-out threshold rule."""
    sections = ROOT / "benchmark" / "report" / "sections.py"
    assert names_imported(sections, "benchmark.evaluation.metrics") <= {
        "PER_CLASS",
        "THRESHOLD_FREE",
        "better",  # which way a metric is better
    }
