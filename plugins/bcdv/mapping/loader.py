"""Load mapping YAML into typed models, with errors that name file, line and field path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bcdv.errors import MappingError
from bcdv.mapping.model import TableMapping

DEFAULTS_DIR = Path(__file__).parent / "defaults"


def _node_line(root: yaml.Node | None, loc: Sequence[Any]) -> int:
    """1-based line of the deepest YAML node along a pydantic error location."""
    node = root
    line = (root.start_mark.line + 1) if root is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                key = next((k for k, _ in node.value if getattr(k, "value", None) == part), None)
                return (key.start_mark.line + 1) if key is not None else line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _message(err: dict[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "enum":
        expected = err.get("ctx", {}).get("expected", "")
        return f"invalid value {err.get('input')!r}; allowed: {expected}"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


@dataclass(frozen=True)
class LoadedMapping:
    """A validated mapping and the file it came from."""

    mapping: TableMapping
    path: Path


def load_mapping_file(path: str | Path) -> LoadedMapping:
    """Parse and validate one mapping file.

    Raises:
        MappingError: naming ``file:line`` and the field path of the first problem.
    """
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise MappingError(f"{p}:{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise MappingError(f"{p}:1: a mapping file must be a YAML mapping (key: value)")
    try:
        mapping = TableMapping.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        loc = first["loc"]
        line = _node_line(root, loc)
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise MappingError(f"{p}:{line}: {_path(loc)}: {_message(first)}{more}") from None
    return LoadedMapping(mapping=mapping, path=p)


def mapping_files(directory: str | Path) -> list[Path]:
    """The mapping files of a directory, sorted by name."""
    d = Path(directory)
    return sorted([*d.glob("*.yaml"), *d.glob("*.yml")])


def load_mappings(directory: str | Path) -> dict[str, TableMapping]:
    """Load every mapping of a directory; raise on the first invalid file."""
    out: dict[str, TableMapping] = {}
    for path in mapping_files(directory):
        loaded = load_mapping_file(path)
        name = loaded.mapping.name
        if name in out:
            raise MappingError(f"{path}:1: name: mapping {name!r} is defined twice")
        out[name] = loaded.mapping
    return out
