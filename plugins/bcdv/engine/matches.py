"""Whether a record (as a dict) satisfies a mapping's OData ``$filter``, evaluated locally.

Used where a run must know what a service's filter would return for a record that does not
exist yet (a dry run's pass back sees what the first pass would create). Comparisons follow
the engine's per-type value rules (``values.same``: a null decimal is 0, blank enums are
blank). Anything this evaluator does not understand answers ``None`` (unknown), never a guess.
"""

from __future__ import annotations

from typing import Any

from odata_query import ast
from odata_query.grammar import ODataLexer, ODataParser

from bcdv.engine.values import canon, same


class _Unknown(Exception):
    pass


def matches(filter_text: str | None, row: dict[str, Any]) -> bool | None:
    """True/False when the filter can be evaluated on ``row``; None when it cannot."""
    if not filter_text:
        return True
    try:
        tree = ODataParser().parse(ODataLexer().tokenize(filter_text))
        return bool(_eval(tree, row))
    except _Unknown:
        return None
    except Exception:  # a filter the parser rejects is the validator's business
        return None


def _literal(node: Any) -> Any:
    if isinstance(node, ast.Null):
        return None
    if isinstance(node, ast.Boolean):
        return node.val == "true"
    if isinstance(node, ast.Integer):
        return int(node.val)
    if isinstance(node, ast.Float):
        return float(node.val)
    if isinstance(node, (ast.String, ast.GUID, ast.DateTime, ast.Date)):
        return node.val
    raise _Unknown(type(node).__name__)


def _value(node: Any, row: dict[str, Any]) -> Any:
    if isinstance(node, ast.Identifier) and not node.namespace:
        if node.name not in row:
            raise _Unknown(node.name)
        return row[node.name]
    return _literal(node)


def _eval(node: Any, row: dict[str, Any]) -> bool:
    if isinstance(node, ast.BoolOp):
        left, right = _eval(node.left, row), _eval(node.right, row)
        return (left and right) if isinstance(node.op, ast.And) else (left or right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _eval(node.operand, row)
    if isinstance(node, ast.Compare):
        a, b = _value(node.left, row), _value(node.right, row)
        if isinstance(node.comparator, ast.Eq):
            return same(a, b)
        if isinstance(node.comparator, ast.NotEq):
            return not same(a, b)
        raise _Unknown("ordering comparison")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Identifier) and \
            node.func.name in ("contains", "startswith", "endswith") and len(node.args) == 2:
        text = canon(_value(node.args[0], row)).lower()
        part = canon(_value(node.args[1], row)).lower()
        return {"contains": part in text, "startswith": text.startswith(part),
                "endswith": text.endswith(part)}[node.func.name]
    raise _Unknown(type(node).__name__)
