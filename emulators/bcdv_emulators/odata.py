"""A small OData $filter/$orderby/$select parser that compiles to SQLite.

Hand-written (instead of odata-query) so that errors carry the services' exact messages and
the Business Central quirks (``or`` only on one field, blank enums written ``' '`` or
``'_x0020_'``, case-sensitive text) and Dataverse quirks (case-insensitive text, SQL wildcards
honoured inside contains/startswith/endswith literals) can be reproduced.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bcdv_emulators.model import Prop


class QueryError(Exception):
    """A client error in a query option; ``kind`` picks the service's error code."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


# --- value helpers ---------------------------------------------------------------------------
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                     r"[0-9a-fA-F]{12}$")
DATETIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?"
                         r"(Z|[+-]\d{2}:\d{2})?$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_datetime(text: str) -> int | None:
    """ISO 8601 date-time -> epoch milliseconds (None if malformed). No zone means UTC."""
    m = DATETIME_RE.match(text)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, zone = m.groups()
    try:
        value = dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0),
                            tzinfo=dt.timezone.utc)
    except ValueError:
        return None
    ms = int(value.timestamp() * 1000) + (int((frac or "0").ljust(3, "0")[:3]))
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        ms -= sign * (int(zone[1:3]) * 60 + int(zone[4:6])) * 60_000
    return ms


def valid_date(text: str) -> bool:
    """True for a real YYYY-MM-DD date."""
    if not DATE_RE.match(text):
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


# --- tokenizer -------------------------------------------------------------------------------
TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?(?:Z|[+-]\d{2}:\d{2})?)
  | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-]))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\w:]))
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDfFlL]?(?![\w-]))
  | (?P<name>[A-Za-z_][\w.]*(?:/[A-Za-z_][\w.]*)*)
  | (?P<punct>[(),=\[\]])
""", re.X)

COMPARE = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
BOOL_FUNCS = {"contains", "startswith", "endswith"}
STR_FUNCS = {"tolower", "toupper", "trim"}


@dataclass
class Tok:
    """A filter token."""

    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[Tok]:
    """Split a $filter into tokens (raises QueryError on an unexpected character)."""
    toks, pos = [], 0
    while pos < len(text):
        m = TOKEN_RE.match(text, pos)
        if not m:
            raise QueryError("syntax", f"Syntax error at position {pos} in '{text}'.")
        kind = m.lastgroup or ""
        if kind != "ws":
            toks.append(Tok(kind, m.group(), pos))
        pos = m.end()
    return toks


# --- AST -------------------------------------------------------------------------------------
@dataclass
class Node:
    """A parsed expression node: op in {and, or, not, cmp, func, prop, lit}."""

    op: str
    args: list[Any]
    pos: int = 0


class Parser:
    """Recursive-descent parser for the $filter grammar subset both services use."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    def _peek(self) -> Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _take(self) -> Tok:
        tok = self._peek()
        if tok is None:
            raise QueryError("syntax", f"Syntax error at position {len(self.text)} in "
                                       f"'{self.text}'.")
        self.i += 1
        return tok

    def _expect(self, text: str) -> None:
        tok = self._take()
        if tok.text != text:
            raise QueryError("syntax", f"Syntax error at position {tok.pos} in '{self.text}'.")

    def parse(self) -> Node:
        """Parse the whole expression."""
        if not self.toks:
            raise QueryError("syntax", "Expression expected at position 0 in ''.")
        node = self._or()
        tok = self._peek()
        if tok is not None:
            raise QueryError("syntax", f"Syntax error at position {tok.pos} in '{self.text}'.")
        return node

    def _or(self) -> Node:
        node = self._and()
        while (tok := self._peek()) is not None and tok.text == "or":
            self._take()
            node = Node("or", [node, self._and()], tok.pos)
        return node

    def _and(self) -> Node:
        node = self._not()
        while (tok := self._peek()) is not None and tok.text == "and":
            self._take()
            node = Node("and", [node, self._not()], tok.pos)
        return node

    def _not(self) -> Node:
        tok = self._peek()
        if tok is not None and tok.text == "not":
            self._take()
            return Node("not", [self._not()], tok.pos)
        return self._cmp()

    def _cmp(self) -> Node:
        left = self._operand()
        tok = self._peek()
        if tok is not None and tok.text in COMPARE:
            self._take()
            right = self._operand()
            return Node("cmp", [tok.text, left, right], tok.pos)
        if tok is not None and tok.text == "in":
            self._take()
            self._expect("(")
            items = [self._operand()]
            while (p := self._peek()) is not None and p.text == ",":
                self._take()
                items.append(self._operand())
            self._expect(")")
            return Node("in", [left, items], tok.pos)
        return left

    def _arg(self) -> Node:
        """A function argument: an expression, or ``Name=value`` / ``Name=[v,...]`` as used
        by Dataverse query functions (Microsoft.Dynamics.CRM.In(PropertyName='x',...))."""
        tok = self._peek()
        after = self.toks[self.i + 1] if self.i + 1 < len(self.toks) else None
        if tok is not None and tok.kind == "name" and after is not None and after.text == "=":
            self._take()
            self._take()
            if (p := self._peek()) is not None and p.text == "[":
                self._take()
                items = []
                if (q := self._peek()) is not None and q.text != "]":
                    items.append(self._operand())
                    while (q := self._peek()) is not None and q.text == ",":
                        self._take()
                        items.append(self._operand())
                self._expect("]")
                return Node("named", [tok.text, Node("list", items, p.pos)], tok.pos)
            return Node("named", [tok.text, self._operand()], tok.pos)
        return self._or()

    def _operand(self) -> Node:
        tok = self._take()
        if tok.text == "(":
            node = self._or()
            self._expect(")")
            return node
        if tok.kind == "name":
            nxt = self._peek()
            if nxt is not None and nxt.text == "(":
                self._take()
                args = []
                if (p := self._peek()) is not None and p.text != ")":
                    args.append(self._arg())
                    while (p := self._peek()) is not None and p.text == ",":
                        self._take()
                        args.append(self._arg())
                self._expect(")")
                return Node("func", [tok.text, args], tok.pos)
            if tok.text in ("true", "false"):
                return Node("lit", ["bool", tok.text == "true"], tok.pos)
            if tok.text == "null":
                return Node("lit", ["null", None], tok.pos)
            if tok.text in COMPARE or tok.text in ("and", "or", "not"):
                raise QueryError("syntax", f"Syntax error at position {tok.pos} in "
                                           f"'{self.text}'.")
            return Node("prop", [tok.text], tok.pos)
        if tok.kind == "string":
            return Node("lit", ["string", tok.text[1:-1].replace("''", "'")], tok.pos)
        if tok.kind in ("datetime", "guid", "date", "number"):
            return Node("lit", [tok.kind, tok.text], tok.pos)
        raise QueryError("syntax", f"Syntax error at position {tok.pos} in '{self.text}'.")


# --- compiler --------------------------------------------------------------------------------
@dataclass
class Dialect:
    """Service-specific behaviour of the compiler."""

    type_name: str
    resolve: Callable[[str], Prop | None]
    case_insensitive: bool
    or_same_field_only: bool = False
    like_wildcards: bool = False
    enum_literal: Callable[[str], str] = lambda s: s
    query_functions: bool = False
    """Dataverse: Microsoft.Dynamics.CRM.In/NotIn/Between/NotBetween/Null/NotNull."""
    nested_functions: bool = True
    """BC: functions nested in contains/startswith/endswith, and ``in``, need
    ``$schemaversion=2.1``."""


def _edm_of_lit(kind: str, text: Any) -> str:
    return {"string": "Edm.String", "guid": "Edm.Guid", "datetime": "Edm.DateTimeOffset",
            "date": "Edm.Date", "bool": "Edm.Boolean", "null": "null"}.get(
        kind, "Edm.Decimal" if "." in str(text) else "Edm.Int32")


class Compiler:
    """Turns a parsed $filter into an SQL condition + parameters."""

    def __init__(self, dialect: Dialect) -> None:
        self.d = dialect
        self.params: list[Any] = []

    def compile(self, text: str) -> tuple[str, list[Any]]:
        """Parse and compile ``text``."""
        node = Parser(text).parse()
        if self.d.or_same_field_only:
            self._check_or(node)
        sql = self._bool(node)
        return sql, self.params

    def _props_in(self, node: Node) -> set[str]:
        if node.op == "prop":
            return {node.args[0]}
        out: set[str] = set()
        for a in node.args:
            if isinstance(a, Node):
                out |= self._props_in(a)
            elif isinstance(a, list):
                for b in a:
                    if isinstance(b, Node):
                        out |= self._props_in(b)
        return out

    def _check_or(self, node: Node) -> None:
        if node.op == "or" and len(self._props_in(node)) > 1:
            raise QueryError("or_fields", "The 'OR' operator is not supported on distinct "
                                          "fields on an OData filter.")
        for a in node.args:
            if isinstance(a, Node):
                self._check_or(a)

    def _prop(self, name: str) -> Prop:
        p = self.d.resolve(name)
        if p is None:
            raise QueryError("unknown_property", f"Could not find a property named '{name}' on "
                                                 f"type '{self.d.type_name}'.")
        return p

    def _bool(self, node: Node) -> str:
        if node.op == "or":
            listed = self._eq_list(node)
            if listed is not None:
                return listed
        if node.op in ("and", "or"):
            return f"({self._bool(node.args[0])} {node.op.upper()} {self._bool(node.args[1])})"
        if node.op == "not":
            return f"(NOT {self._bool(node.args[0])})"
        if node.op == "cmp":
            return self._cmp(*node.args)
        if node.op == "in":
            if not self.d.nested_functions:
                raise QueryError("in_schema", "The 'in' operator is not supported below "
                                              "$schemaversion=2.1.")
            lsql, lp, _ = self._value(node.args[0])
            items = node.args[1]
            if not items or any(i.op != "lit" for i in items):
                raise QueryError("syntax", "The 'in' operator expects a list of literals.")
            for i in items:
                self.params.append(self._param(i, lp))
            return f"({lsql} IN ({', '.join('?' for _ in items)}))"
        if node.op == "func" and node.args[0] in BOOL_FUNCS:
            return self._strfunc(node.args[0], node.args[1], node.pos)
        if node.op == "func" and node.args[0].startswith("Microsoft.Dynamics.CRM.") \
                and self.d.query_functions:
            return self._crm_function(node.args[0].rsplit(".", 1)[1], node.args[1])
        if node.op == "prop":
            p = self._prop(node.args[0])
            if p.kind == "bool":
                return f'("{p.column}" = 1)'
        if node.op == "lit" and node.args[0] == "bool":
            return "1" if node.args[1] else "0"
        raise QueryError("type", "The $filter expression must evaluate to a single boolean "
                                 "value.")

    def _eq_list(self, node: Node) -> str | None:
        """``p eq a or p eq b or ...`` (one property, non-null literals) as ``p IN (a, b)``:
        the same rows, found through the column's index (SQLite would rather walk the
        ordering index of a paged read and test every row against the ORs)."""
        leaves: list[Node] = []
        stack = [node]
        while stack:
            n = stack.pop()
            if n.op == "or":
                stack += [n.args[1], n.args[0]]
            else:
                leaves.append(n)
        pairs = []
        for leaf in leaves:
            if leaf.op != "cmp" or leaf.args[0] != "eq":
                return None
            left, right = leaf.args[1], leaf.args[2]
            if left.op == "lit":
                left, right = right, left
            if left.op != "prop" or right.op != "lit" or right.args[0] == "null":
                return None
            pairs.append((left, right))
        if len({left.args[0] for left, _ in pairs}) != 1:
            return None
        lsql, lp, _ = self._value(pairs[0][0])
        self.params += [self._param(right, lp) for _, right in pairs]
        return f"({lsql} IN ({', '.join('?' for _ in pairs)}))"

    def _value(self, node: Node) -> tuple[str, Prop | None, bool]:
        """SQL for a value operand -> (sql, prop it derives from, lowered/uppered)."""
        if node.op == "prop":
            p = self._prop(node.args[0])
            return f'"{p.column}"', p, False
        if node.op == "func":
            name, args = node.args
            if name in STR_FUNCS:
                if len(args) != 1:
                    raise QueryError("syntax", f"No function signature for the function with "
                                               f"name '{name}' matches the specified arguments.")
                sql, p, _ = self._value(args[0])
                fn = {"tolower": "lower", "toupper": "upper", "trim": "trim"}[name]
                return f"{fn}({sql})", p, name != "trim"
            if name in BOOL_FUNCS:
                raise QueryError("type", "A boolean function can't be compared.")
            raise QueryError("unsupported", f"An unknown function with name '{name}' was found. "
                                            "This may also be a function import or a key lookup "
                                            "on a navigation property, which is not allowed.")
        raise QueryError("syntax", "A property name was expected.")

    def _param(self, lit: Node, p: Prop | None, op: str = "Equal") -> Any:
        kind, text = lit.args
        if kind == "null":
            return None
        if p is None:
            return text
        want = p.kind
        bad = QueryError("type", f"A binary operator with incompatible types was detected. Found "
                                 f"operand types '{p.edm}' and '{_edm_of_lit(kind, text)}' for "
                                 f"operator kind '{op}'.")
        if want in ("string", "code", "memo"):
            if kind != "string":
                raise bad
            return text
        if want == "enum":
            if kind != "string":
                raise bad
            return self.d.enum_literal(text)
        if want in ("guid", "lookup"):
            if kind != "guid":
                raise bad
            return text.lower()
        if want == "datetime":
            if kind == "datetime":
                return parse_datetime(text)
            if kind == "date":
                return parse_datetime(text + "T00:00:00Z")
            raise bad
        if want == "date":
            if kind != "date" or not valid_date(text):
                raise bad
            return text
        if want == "bool":
            if kind != "bool":
                raise bad
            return 1 if text else 0
        if want in ("int", "bigint", "option", "decimal", "money", "double"):
            if kind != "number":
                raise bad
            num = float(text.rstrip("mMdDfFlL"))
            return int(num) if want in ("int", "bigint", "option") and num.is_integer() else num
        raise bad

    def _cmp(self, op: str, left: Node, right: Node) -> str:
        opname = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual",
                  "lt": "LessThan", "le": "LessThanOrEqual"}[op]
        if left.op == "lit" and right.op != "lit":
            left, right = right, left
            op = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}.get(op, op)
        if left.op == "lit":
            raise QueryError("type", "A binary operator must compare a property.")
        lsql, lp, _ = self._value(left)
        if right.op == "lit":
            val = self._param(right, lp, opname)
            if val is None:
                if op not in ("eq", "ne"):
                    return "0"
                return f"({lsql} IS {'NOT ' if op == 'ne' else ''}NULL)"
            self.params.append(val)
            return f"({lsql} {COMPARE[op]} ?)"
        rsql, rp, _ = self._value(right)
        if lp is not None and rp is not None and lp.edm != rp.edm:
            raise QueryError("type", f"A binary operator with incompatible types was detected. "
                                     f"Found operand types '{lp.edm}' and '{rp.edm}' for operator "
                                     f"kind '{opname}'.")
        return f"({lsql} {COMPARE[op]} {rsql})"

    def _crm_function(self, name: str, args: list[Node]) -> str:
        named = {a.args[0]: a.args[1] for a in args if a.op == "named"}
        if len(named) != len(args) or "PropertyName" not in named or \
                named["PropertyName"].op != "lit" or named["PropertyName"].args[0] != "string":
            raise QueryError("syntax", f"Microsoft.Dynamics.CRM.{name} needs named parameters "
                                       "(PropertyName='...', ...).")
        p = self._prop(named["PropertyName"].args[1])
        col = f'"{p.column}"'
        if name in ("Null", "NotNull"):
            return f"({col} IS {'NOT ' if name == 'NotNull' else ''}NULL)"
        values = named.get("PropertyValues")
        if values is None or values.op != "list" or not values.args:
            raise QueryError("syntax", f"Microsoft.Dynamics.CRM.{name} needs PropertyValues=[...].")
        params = [self._param(_as_typed(v, p), p) for v in values.args]
        if name in ("In", "NotIn"):
            self.params.extend(params)
            marks = ", ".join("?" for _ in params)
            return f"({col} {'NOT ' if name == 'NotIn' else ''}IN ({marks}))"
        if name in ("Between", "NotBetween") and len(params) == 2:
            self.params.extend(params)
            return f"({'NOT ' if name == 'NotBetween' else ''}({col} BETWEEN ? AND ?))"
        raise QueryError("unsupported", f"The query function Microsoft.Dynamics.CRM.{name} is "
                                        "not supported by the emulator.")

    def _strfunc(self, name: str, args: list[Node], pos: int) -> str:
        if len(args) != 2 or args[1].op != "lit" or args[1].args[0] != "string":
            raise QueryError("syntax", f"No function signature for the function with name "
                                       f"'{name}' matches the specified arguments.")
        if args[0].op == "func" and not self.d.nested_functions:
            raise QueryError("unsupported", f"Nested function calls in '{name}' require "
                                            "$schemaversion=2.1.")
        sql, p, _ = self._value(args[0])
        if p is not None and p.kind not in ("string", "code", "memo", "enum"):
            raise QueryError("type", f"No function signature for the function with name '{name}' "
                                     f"matches the specified arguments. The function signatures "
                                     f"considered are: {name}(Edm.String Nullable=true, "
                                     f"Edm.String).")
        text = args[1].args[1]
        if self.d.like_wildcards:
            pattern = {"contains": f"%{text}%", "startswith": f"{text}%",
                       "endswith": f"%{text}"}[name]
            self.params.append(pattern)
            return f"({sql} LIKE ?)"
        if name == "contains":
            self.params.append(text)
            return f"(instr({sql}, ?) > 0)"
        if name == "startswith":
            self.params.extend([len(text), text])
            return f"(substr({sql}, 1, ?) = ?)"
        self.params.extend([len(text), text])
        return f"(substr({sql}, -?) = ?)" if text else "(1)"


def parse_select(text: str, resolve: Callable[[str], Prop | None],
                 type_name: str) -> list[Prop]:
    """$select -> properties (raises QueryError for unknown names)."""
    out, seen = [], set()  # a property named twice is served once
    for raw in text.split(","):
        name = raw.strip()
        if name == "*":
            continue
        p = resolve(name)
        if p is None:
            raise QueryError("unknown_property", f"Could not find a property named '{name}' on "
                                                 f"type '{type_name}'.")
        if p.column not in seen:
            seen.add(p.column)
            out.append(p)
    return out


def parse_orderby(text: str, resolve: Callable[[str], Prop | None],
                  type_name: str) -> list[tuple[Prop, bool]]:
    """$orderby -> [(prop, descending)]."""
    out = []
    for raw in text.split(","):
        bits = raw.split()
        if not bits or len(bits) > 2 or (len(bits) == 2 and bits[1] not in ("asc", "desc")):
            raise QueryError("syntax", f"Syntax error at position 0 in '{text}'.")
        p = resolve(bits[0])
        if p is None:
            raise QueryError("unknown_property", f"Could not find a property named '{bits[0]}' "
                                                 f"on type '{type_name}'.")
        out.append((p, len(bits) == 2 and bits[1] == "desc"))
    return out


def _as_typed(node: Node, p: Prop) -> Node:
    """Dataverse query functions quote every value ('1', 'guid'): retype for the column."""
    if node.op != "lit" or node.args[0] != "string":
        return node
    text = node.args[1]
    if p.kind in ("guid", "lookup") and GUID_RE.match(text):
        return Node("lit", ["guid", text], node.pos)
    if p.kind in ("int", "bigint", "option", "decimal", "money", "double") and \
            re.fullmatch(r"-?\d+(\.\d+)?", text):
        return Node("lit", ["number", text], node.pos)
    if p.kind == "datetime" and parse_datetime(text) is not None:
        return Node("lit", ["datetime", text], node.pos)
    if p.kind == "bool" and text in ("true", "false"):
        return Node("lit", ["bool", text == "true"], node.pos)
    return node
