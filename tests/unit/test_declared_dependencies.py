"""Each distribution declares exactly what it imports (issue 12): the product's core
(everything but bcdv.airflow, whose needs come with its ``airflow`` extra) and the emulators,
each against the ``dependencies`` of its own pyproject.toml."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_distributions(package: Path, skip: tuple[str, ...] = ()) -> set[str]:
    modules: set[str] = set()
    for path in package.rglob("*.py"):
        if any(part in skip for part in path.relative_to(package).parts):
            continue
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if _is_type_checking(block)
                       for stmt in block.body for n in ast.walk(stmt)}  # type: ignore[attr-defined]
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue  # imports for type checkers only are not run-time dependencies
            if isinstance(node, ast.Import):
                modules.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    own = {package.name}
    third_party = {m for m in modules - own if m not in sys.stdlib_module_names}
    owners = packages_distributions()
    return {_norm(owners[m][0]) for m in third_party}


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _declared(pyproject: Path) -> set[str]:
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return {_norm(re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0]) for d in deps}


@pytest.mark.parametrize(("package", "pyproject", "skip"), [
    (ROOT / "plugins" / "bcdv", ROOT / "pyproject.toml", ("airflow",)),
    (ROOT / "emulators" / "bcdv_emulators", ROOT / "emulators" / "pyproject.toml", ()),
])
def test_a_distribution_declares_exactly_what_it_imports(
        package: Path, pyproject: Path, skip: tuple[str, ...]) -> None:
    imported = _imported_distributions(package, skip)
    declared = _declared(pyproject)
    assert imported == declared, (f"imported but not declared: {sorted(imported - declared)}; "
                                  f"declared but not imported: {sorted(declared - imported)}")
