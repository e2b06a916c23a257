"""Load mapping YAML into typed models, with errors that name file, line and field path.

One file is validated on its own (keys, types, enum values, contradictory flags, references
inside the file), then against its directory (mapping names it refers to, dependency cycles,
duplicate names). The directory checks read the other files leniently, so one broken file
does not make its neighbours fail too (each Airflow DAG file loads one mapping).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from bcdv.errors import MappingError
from bcdv.mapping.model import TableMapping
from bcdv.mapping.rules import RULE_TYPES

if TYPE_CHECKING:
    # The typed dict of ValidationError.errors(), from pydantic's own core (not a
    # dependency of ours at run time).
    from pydantic_core import ErrorDetails

DEFAULTS_DIR = Path(__file__).parent / "defaults"
# A table mapping is a few KiB; the limit keeps validation (and a DAG file's import) short.
MAX_FILE_BYTES = 1024 * 1024
# Nodes after alias expansion: pydantic walks aliases as copies ("billion laughs").
MAX_NODES = 200_000
# libyaml stops at 1000 nesting levels; the pure-Python parser would hit the recursion limit.
MAX_DEPTH = 200
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_REL = re.compile(r"^@([^:]*): ")


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
            # A key's own line (the value of a block mapping starts on the next line).
            key = next(k for k, v in node.value if v is match)
            node = match
            line = (key.start_mark.line + 1) if not isinstance(match, yaml.ScalarNode) \
                else match.start_mark.line + 1
            continue
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
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


def _parse_rel(text: str) -> list[Any]:
    """``fields[3].transform[0]`` -> ["fields", 3, "transform", 0]."""
    out: list[Any] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", text):
        out.append(int(index) if index else name)
    return out


def _loc_and_message(err: ErrorDetails) -> tuple[list[Any], str]:
    # Discriminated unions add the rule type to the location; drop it.
    loc: list[Any] = []
    for part in err["loc"]:
        if (isinstance(part, str) and part in RULE_TYPES and len(loc) >= 2
                and loc[-2] == "transform" and isinstance(loc[-1], int)):
            continue
        loc.append(part)
    if err["type"] == "extra_forbidden":
        return loc, "unknown key"
    if err["type"] in ("enum", "literal_error"):
        expected = err.get("ctx", {}).get("expected", "")
        return loc, f"invalid value {err.get('input')!r}; allowed: {expected}"
    if err["type"] == "union_tag_invalid":
        expected = err.get("ctx", {}).get("expected_tags", "")
        tag = err.get("ctx", {}).get("tag")
        return [*loc, "type"], f"invalid value {tag!r}; allowed: {expected}"
    if err["type"] == "union_tag_not_found":
        return loc, "a rule needs 'type'"
    msg = str(err["msg"]).removeprefix("Value error, ")
    m = _REL.match(msg)
    if m:
        loc = [*loc, *_parse_rel(m.group(1))]
        msg = msg[m.end():]
    return loc, msg


def _raise_at(path: Path, root: yaml.Node | None, loc: Sequence[Any], message: str) -> None:
    raise MappingError(f"{path}:{_node_line(root, loc)}: {_path(loc)}: {message}")


@dataclass(frozen=True)
class LoadedMapping:
    """A validated mapping, the file it came from and its YAML node tree (for line numbers)."""

    mapping: TableMapping
    path: Path
    root: yaml.Node | None = field(default=None, repr=False, compare=False)

    def line_of(self, *loc: Any) -> int:
        """The line of a field path, e.g. ``line_of("fields", 3, "dataverse")``."""
        return _node_line(self.root, loc)

    def where(self, *loc: Any) -> str:
        """``file:line: path`` for messages about this mapping."""
        return f"{self.path}:{self.line_of(*loc)}: {_path(loc)}"


def read_text(p: Path) -> str:
    """A mapping file's text: at most MAX_FILE_BYTES of UTF-8 without NUL or other binary
    control characters, else a MappingError naming the file (and line)."""
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise MappingError(f"{p}:1: cannot read the file: {exc.strerror or exc}") from None
    if size > MAX_FILE_BYTES:
        raise MappingError(f"{p}:1: the file is {size:,} bytes, over the limit of "
                           f"{MAX_FILE_BYTES // (1024 * 1024)} MiB for a mapping file")
    raw = p.read_bytes()[:MAX_FILE_BYTES + 1]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise MappingError(f"{p}:{line}: not a text file (invalid UTF-8 at byte "
                           f"{exc.start})") from None
    bad = _BINARY.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise MappingError(f"{p}:{line}: not a text file (control character "
                           f"U+{ord(bad.group()):04X})")
    return text


_BINARY = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _parse(p: Path) -> tuple[yaml.Node | None, Any]:
    """Parse once (libyaml when present): the node tree for line numbers and the data."""
    text = read_text(p)
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_shape(p, node)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise MappingError(f"{p}:{line}: not valid YAML: {problem}") from None
    except RecursionError:
        raise MappingError(f"{p}:{_mark_line(loader)}: not valid YAML: nested more than "
                           f"{MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()
    return node, data


def _mark_line(loader: yaml.SafeLoader) -> int:
    try:
        return int(loader.get_mark().line) + 1
    except Exception:  # the C loader keeps no Python-side mark
        return 1


def _check_shape(p: Path, root: yaml.Node) -> None:
    """Refuse nesting deeper than MAX_DEPTH and more than MAX_NODES nodes once aliases are
    expanded, walking each distinct node once (iteratively: no recursion to exhaust)."""
    expanded: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    on_path: set[int] = set()
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if depth > MAX_DEPTH:
            raise MappingError(f"{p}:{node.start_mark.line + 1}: not valid YAML: nested more "
                               f"than {MAX_DEPTH} levels deep")
        children = _children(node)
        if done:
            on_path.discard(key)
            expanded[key] = 1 + sum(expanded[id(c)] for c in children)
            if expanded[key] > MAX_NODES:
                raise MappingError(f"{p}:{node.start_mark.line + 1}: the document is too large "
                                   f"once its aliases are expanded (over {MAX_NODES:,} nodes)")
            continue
        if key in expanded:
            continue
        if key in on_path:  # a recursive alias
            raise MappingError(f"{p}:{node.start_mark.line + 1}: not valid YAML: an alias "
                               "refers to a node that contains it")
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if id(c) not in expanded)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def parse_mapping_file(path: str | Path) -> LoadedMapping:
    """Parse and validate one file on its own (no checks against other files).

    Raises:
        MappingError: naming ``file:line`` and the field path of the first problem.
    """
    p = Path(path)
    root, data = _parse(p)
    if not isinstance(data, dict):
        raise MappingError(f"{p}:1: a mapping file must be a YAML mapping (key: value)")
    try:
        mapping = TableMapping.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        loc, message = _loc_and_message(errors[0])
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        _raise_at(p, root, loc, message + more)
        raise  # unreachable
    return LoadedMapping(mapping=mapping, path=p, root=root)


def load_mapping_file(path: str | Path, *, check_directory: bool = True) -> LoadedMapping:
    """Parse and validate one mapping file, and (by default) its references to the other
    mapping files of its directory: mapping names, dependency cycles, duplicate names.

    Raises:
        MappingError: naming ``file:line`` and the field path of the first problem.
    """
    loaded = parse_mapping_file(path)
    if check_directory:
        index = _DirectoryIndex.scan(loaded.path.parent, exclude=loaded.path)
        _check_against(loaded, index)
    return loaded


def mapping_files(directory: str | Path) -> list[Path]:
    """The mapping files of a directory, sorted by name."""
    d = Path(directory)
    return sorted([*d.glob("*.yaml"), *d.glob("*.yml")])


def load_mapping_set(directory: str | Path) -> dict[str, LoadedMapping]:
    """Load and cross-check every mapping of a directory; raise on the first problem."""
    loaded = [parse_mapping_file(p) for p in mapping_files(directory)]
    index = _DirectoryIndex.of(loaded)
    for item in loaded:
        _check_against(item, index)
    return {item.mapping.name: item for item in loaded}


def load_mappings(directory: str | Path) -> dict[str, TableMapping]:
    """Load every mapping of a directory, validated as a whole; raise on the first problem."""
    return {name: item.mapping for name, item in load_mapping_set(directory).items()}


@dataclass
class _DirectoryIndex:
    """Names and dependencies of the mapping files of a directory (read leniently)."""

    files: dict[str, Path]  # mapping name -> file
    depends: dict[str, list[str]]
    complete: bool  # False when some file could not be read: unknown names are not errors

    @classmethod
    def of(cls, loaded: list[LoadedMapping]) -> _DirectoryIndex:
        return cls({m.mapping.name: m.path for m in loaded},
                   {m.mapping.name: list(m.mapping.depends_on) for m in loaded}, True)

    @classmethod
    def scan(cls, directory: Path, exclude: Path) -> _DirectoryIndex:
        files: dict[str, Path] = {}
        depends: dict[str, list[str]] = {}
        complete = True
        for p in mapping_files(directory):
            if p.resolve() == exclude.resolve():
                continue
            try:
                _, data = _parse(p)
            except MappingError:
                complete = False
                continue
            name = data.get("name") if isinstance(data, dict) else None
            if not isinstance(name, str):
                complete = False
                continue
            files.setdefault(name, p)
            deps = data.get("depends_on") or []
            depends[name] = [d for d in deps if isinstance(d, str)] if isinstance(deps, list) \
                else []
        return cls(files, depends, complete)


def _check_against(loaded: LoadedMapping, index: _DirectoryIndex) -> None:
    m, p, root = loaded.mapping, loaded.path, loaded.root
    other = index.files.get(m.name)
    if other is not None and other.resolve() != p.resolve():
        _raise_at(p, root, ["name"], f"mapping {m.name!r} is also defined in {other}")
    known = set(index.files) | {m.name}
    if index.complete:
        for i, dep in enumerate(m.depends_on):
            if dep not in known:
                _raise_at(p, root, ["depends_on", i], f"unknown mapping {dep!r}; known: "
                          f"{', '.join(sorted(known))}")
        for i, f in enumerate(m.fields):
            if f.lookup is not None and f.lookup.mapping not in known:
                _raise_at(p, root, ["fields", i, "lookup", "mapping"],
                          f"unknown mapping {f.lookup.mapping!r}; known: "
                          f"{', '.join(sorted(known))}")
            for j, also in enumerate(f.lookup.also if f.lookup is not None else []):
                if also not in known:
                    _raise_at(p, root, ["fields", i, "lookup", "also", j],
                              f"unknown mapping {also!r}; known: {', '.join(sorted(known))}")
    graph = {**index.depends, m.name: list(m.depends_on)}
    for i, dep in enumerate(m.depends_on):
        cycle = _path_back(graph, dep, m.name)
        if cycle is not None:
            chain = " -> ".join([m.name, *cycle])
            _raise_at(p, root, ["depends_on", i], f"dependency cycle: {chain}")


def _path_back(graph: dict[str, list[str]], start: str, goal: str) -> list[str] | None:
    """A dependency path from ``start`` to ``goal`` (inclusive), or None."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        if node == goal:
            return path
        if node in seen:
            continue
        seen.add(node)
        for nxt in graph.get(node, []):
            stack.append((nxt, [*path, nxt]))
    return None
