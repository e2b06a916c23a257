"""Tables a pass needs to translate values: field lookups, lookups through couplings.

Loaded once per pass (reference tables are small: currencies, salespeople, payment terms),
then applied to whole columns with ``Series.map``.

A lookup to Dataverse turns a Business Central value (e.g. a salesperson code) into the id of
the Dataverse row coupled to the referenced record (BC: "must be coupled to a record in
Dataverse"); when that record is not coupled, the referenced Dataverse table is searched on
the referenced mapping's field pair (BC's implicit coupling, e.g. a currency by ISO code,
which also covers the local currency). A lookup to Business Central goes the other way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bcdv.engine.entity_rules import EntityFacts, gather
from bcdv.engine.values import canon
from bcdv.errors import ConfigError
from bcdv.mapping.model import Direction, FieldMapping, Side, TableMapping


@dataclass
class LookupTable:
    """Everything one lookup field needs, in both directions."""

    target_entity_set: str  # Dataverse entity set of the referenced mapping
    value_to_bc_id: dict[str, str] = field(default_factory=dict)  # canon(match_on) -> bc id
    bc_id_to_value: dict[str, Any] = field(default_factory=dict)  # bc id -> match_on value
    bc_to_dv: dict[str, str] = field(default_factory=dict)  # coupled pairs
    dv_to_bc: dict[str, str] = field(default_factory=dict)
    dv_by_value: dict[str, list[str]] = field(default_factory=dict)  # canon(dv match) -> ids
    dv_value: dict[str, Any] = field(default_factory=dict)  # dv id -> its match value
    # What Business Central reads back for a blank value: a currency lookup's blank code is
    # the local currency, which API v2.0 returns as the LCY code (companyInformation's
    # currencyCode), so a blank is written as that code (BC stores it as blank again).
    blank_as: str = ""


@dataclass
class Tables:
    """Field-lookup tables (by rule table name) and lookup tables (by field label)."""

    field_lookups: dict[str, dict[Any, Any]] = field(default_factory=dict)
    lookups: dict[str, LookupTable] = field(default_factory=dict)
    entity: EntityFacts = field(default_factory=EntityFacts)  # BC's per-table rules


def _referenced(mappings: dict[str, TableMapping], f: FieldMapping) -> list[TableMapping]:
    """The mappings a lookup goes through, in order (``mapping``, then ``also``); all of
    them map the same Dataverse table."""
    if f.lookup is None:
        raise ConfigError(f"field {f.label} is not a lookup")
    refs = []
    for name in f.lookup.mappings:
        ref = mappings.get(name)
        if ref is None:
            raise ConfigError(f"field {f.label} looks up through mapping {name!r}, which is "
                              "not loaded")
        refs.append(ref)
    tables = {r.dataverse.entity_set for r in refs}
    if len(tables) > 1:
        raise ConfigError(f"field {f.label} looks up through {', '.join(f.lookup.mappings)}, "
                          f"which map different Dataverse tables ({', '.join(sorted(tables))})")
    return refs


def _dv_match_field(ref: TableMapping, match_on: str) -> str | None:
    for f in ref.fields:
        if f.business_central == match_on and f.dataverse and f.constant is None:
            return f.dataverse
    return None


# Business Central processes five requests of a user at once and queues the rest (Learn:
# dynamics-rate-limits); a pass's reference reads go that many at once.
READS_AT_ONCE = 5
# What a blank currency code reads as: the company's local currency code (see _lcy).
LCY_READ = ("companyInformation", ["currencyCode"])
Read = tuple[str, str, tuple[str, ...]]  # (system, entity set, columns)


def _same_read(key: Read) -> Read:
    """A read's key whatever the order its columns were asked in."""
    return key[0], key[1], tuple(sorted(set(key[2])))


class _Reads:
    """The reference tables a pass reads, each once, read at the same time (none depends
    on another): Business Central's in one ``$batch`` of GETs, the others a request each.

    Within one run of a mapping (``ctx.reference_tables`` set by runner.sync_mapping), a
    table the first pass read is not read again by the pass back: nothing in the run writes
    it. The mapping's own tables are always read (its passes create records in them)."""

    def __init__(self, ctx: Any, own: Sequence[str] = ()) -> None:
        self.ctx = ctx
        self.own = set(own)
        self.wanted: list[Read] = []
        self.rows: dict[Read, list[dict[str, Any]]] = {}
        self.by_id: list[dict[str, Any]] = []

    def want(self, system: str, entity_set: str, columns: Sequence[str]) -> Read:
        """Ask for a table (a table asked twice, its columns in any order, is read once)."""
        key = (system, entity_set, tuple(columns))
        if key not in self.wanted:
            self.wanted.append(key)
        return key

    def fetch(self, *also: Callable[[], Any],
              known: Mapping[Read, list[dict[str, Any]]] | None = None,
              by_id: RowsById | None = None) -> list[Any]:
        """Read every wanted table, ``READS_AT_ONCE`` at a time; run ``also`` alongside
        (other reads of the pass) and return what they returned. ``known``: tables the
        pass read already (with its signpost, see :func:`signpost_reads`). ``by_id``: rows
        read in the same request as its system's tables when they fit one (else alone),
        into ``self.by_id``."""
        def read(key: Read) -> list[dict[str, Any]]:
            system, entity_set, columns = key
            client = (self.ctx.business_central if system == "business_central"
                      else self.ctx.dataverse).client
            return list(client.list(entity_set, select=list(columns) or None))

        def read_bc(keys: list[Read]) -> list[list[dict[str, Any]]]:
            client = self.ctx.business_central.client
            return list(client.list_batched([(k[1], list(k[2]) or None) for k in keys]))

        run = getattr(self.ctx, "reference_tables", None)
        needed = list(dict.fromkeys(_same_read(k) for k in self.wanted))
        read_before = {k: known[k] for k in needed if known is not None and k in known}
        have = {**{k: run[k] for k in needed if run is not None and k in run}, **read_before}
        todo = [k for k in needed if k not in have]
        # The tables of the system ``by_id`` reads go in the same $batch as its rows.
        with_rows = [k for k in todo if by_id is not None and by_id.ids
                     and k[0] == by_id.adapter.system]
        if by_id is not None and not by_id.adapter.fits(len(with_rows), len(by_id.ids)):
            with_rows = []
        todo = [k for k in todo if k not in with_rows]
        # Business Central's tables in one $batch of GETs when there are several.
        together = [k for k in todo if k[0] == "business_central"]
        if len(together) < 2:
            together = []
        alone = [k for k in todo if k not in together]

        def read_by_id(rows: RowsById) -> list[list[dict[str, Any]]]:
            if with_rows:
                tables, self.by_id = rows.adapter.tables_and_rows(
                    [(k[1], list(k[2]) or None) for k in with_rows], rows.side, rows.ids,
                    rows.columns)
                return tables
            self.by_id = rows.adapter.fetch(rows.side, rows.ids, rows.columns) \
                if rows.ids else []
            return []

        with ThreadPoolExecutor(max_workers=READS_AT_ONCE,
                                thread_name_prefix="bcdv-lookups") as pool:
            extra = [pool.submit(fn) for fn in also]
            batched = pool.submit(read_bc, together) if together else None
            by_rows = pool.submit(read_by_id, by_id) if by_id is not None else None
            tables = dict(zip(alone, pool.map(read, alone), strict=True))
            if batched is not None:
                tables.update(zip(together, batched.result(), strict=True))
            if by_rows is not None:
                tables.update(zip(with_rows, by_rows.result(), strict=True))
            results = [f.result() for f in extra]
        if run is not None:
            run.update({k: v for k, v in {**read_before, **tables}.items()
                        if k[1] not in self.own})
        got = {**have, **tables}
        self.rows.update({k: got[_same_read(k)] for k in self.wanted})
        return results


_FieldReads = dict[str, tuple[Any, Read]]
_LookupReads = list[tuple[FieldMapping, list[tuple[TableMapping, dict[str, Read]]]]]


def _pass_reads(ctx: Any, mapping: TableMapping,
                direction: Direction) -> tuple[_Reads, _FieldReads, _LookupReads]:
    """The reference tables a pass's field mappings need, asked of a :class:`_Reads`."""
    reads = _Reads(ctx, own=(mapping.business_central.entity_set,
                             mapping.dataverse.entity_set))
    field_reads: _FieldReads = {}
    lookups: _LookupReads = []
    for f in mapping.fields_for(direction):
        for rule in f.rules_for(direction):
            if getattr(rule, "type", "") == "field_lookup" and \
                    rule.table_name not in field_reads:
                field_reads[rule.table_name] = (rule, reads.want(
                    "business_central", rule.entity_set, [rule.key, rule.field]))
        if f.lookup is not None:
            lookups.append((f, [(ref, _lookup_reads(reads, ref, f))
                                for ref in _referenced(ctx.mappings, f)]))
    return reads, field_reads, lookups


def signpost_reads(ctx: Any, mapping: TableMapping, direction: Direction,
                   system: str) -> list[Read]:
    """The reference tables of ``system`` a pass needs and the run has not read yet: the
    pass's first request reads them and takes the signpost from the same answer (one
    request instead of two; see extract.signpost_and_references)."""
    reads, _, _ = _pass_reads(ctx, mapping, direction)
    run = getattr(ctx, "reference_tables", None) or {}
    return [k for k in dict.fromkeys(_same_read(k) for k in reads.wanted)
            if k[0] == system and k not in run]


def run_reads(ctx: Any, mapping: TableMapping, direction: Direction,
              system: str) -> list[Read]:
    """The reference tables of ``system`` a pass needs that the run has not read and may
    keep for it (``ctx.reference_tables``; not the mapping's own tables, which its passes
    write): an earlier request of the run to ``system`` can read them (see
    :func:`keep_for_run`) and the pass will not read them again."""
    if getattr(ctx, "reference_tables", None) is None:
        return []
    own = {mapping.business_central.entity_set, mapping.dataverse.entity_set}
    return [k for k in signpost_reads(ctx, mapping, direction, system) if k[1] not in own]


def keep_for_run(ctx: Any, reads: Sequence[Read], tables: Sequence[list[dict[str, Any]]]
                 ) -> None:
    """Tables of :func:`run_reads`, read, for the run's passes."""
    run = getattr(ctx, "reference_tables", None)
    if run is not None:
        run.update(zip(reads, tables, strict=True))


@dataclass(frozen=True)
class RowsById:
    """Records of one side by id (``adapter.fetch``), to read with the pass's reference
    tables of that side's system: the target rows the first chunk compares with."""

    adapter: Any
    side: Side
    ids: list[str]
    columns: list[str]


def load_tables_and_rows(ctx: Any, mapping: TableMapping, direction: Direction,
                         known: Mapping[Read, list[dict[str, Any]]] | None = None,
                         by_id: RowsById | None = None
                         ) -> tuple[Tables, list[dict[str, Any]]]:
    """Read the reference data a pass's field mappings need (all of it at once, see
    :class:`_Reads`; ``known``: what the pass read with its signpost), then build the
    tables; and the rows of ``by_id``, read in the same request as the tables of their
    system when they fit one (a pass with few changes then reads the reference tables and
    the rows it compares with in one request instead of two)."""
    reads, field_reads, lookups = _pass_reads(ctx, mapping, direction)
    entity, = reads.fetch(lambda: gather(ctx, mapping, direction), known=known, by_id=by_id)
    tables = Tables(entity=entity)
    for name, (rule, key) in field_reads.items():
        tables.field_lookups[name] = {r[rule.key]: r[rule.field] for r in reads.rows[key]}
    for f, refs in lookups:
        tables.lookups[f.label] = _merged([_lookup_table(ctx, ref, f, reads.rows, wanted)
                                           for ref, wanted in refs])
    return tables, reads.by_id


def _merged(parts: list[LookupTable]) -> LookupTable:
    """One lookup table over several mappings of the same Dataverse table: a value, record
    or coupling found through an earlier mapping wins (BC: a contact's company is looked up
    as a customer first, then as a vendor)."""
    if len(parts) == 1:
        return parts[0]
    out = LookupTable(target_entity_set=parts[0].target_entity_set)
    for part in parts:
        for mine, theirs in ((out.value_to_bc_id, part.value_to_bc_id),
                             (out.bc_id_to_value, part.bc_id_to_value),
                             (out.bc_to_dv, part.bc_to_dv), (out.dv_to_bc, part.dv_to_bc),
                             (out.dv_value, part.dv_value)):
            for key, value in theirs.items():
                mine.setdefault(key, value)
        for key, ids in part.dv_by_value.items():
            known = out.dv_by_value.setdefault(key, [])
            known += [i for i in ids if i not in known]
    return out


def _match_on(ref: TableMapping, f: FieldMapping) -> str:
    if f.lookup is None:
        raise ConfigError(f"field {f.label} is not a lookup")
    return f.lookup.match_on or ref.business_central.key


def _lookup_reads(reads: _Reads, ref: TableMapping, f: FieldMapping) -> dict[str, Read]:
    """The reads one referenced mapping of a lookup needs, asked of ``reads``."""
    match_on = _match_on(ref, f)
    bc_side, dv_side = ref.business_central, ref.dataverse
    wanted = {"bc": reads.want("business_central", bc_side.entity_set,
                               list(dict.fromkeys([bc_side.key, match_on])))}
    if bc_side.entity_set == "currencies":
        wanted["lcy"] = reads.want("business_central", *LCY_READ)
    dv_field = _dv_match_field(ref, match_on)
    # Implicit coupling (BC's "find uncoupled destination", e.g. a currency by ISO code) only
    # where the referenced mapping itself couples on that one field; otherwise an uncoupled
    # reference is an uncoupled reference.
    if dv_field and any(g.fields == [match_on] for g in ref.coupling.match):
        wanted["dv"] = reads.want("dataverse", dv_side.entity_set, [dv_side.key, dv_field])
    return wanted


def _lookup_table(ctx: Any, ref: TableMapping, f: FieldMapping,
                  rows: dict[Read, list[dict[str, Any]]], wanted: dict[str, Read]
                  ) -> LookupTable:
    match_on = _match_on(ref, f)
    bc_side, dv_side = ref.business_central, ref.dataverse
    table = LookupTable(target_entity_set=dv_side.entity_set)
    for row in rows[wanted["bc"]]:
        table.value_to_bc_id[canon(row.get(match_on))] = str(row[bc_side.key])
        table.bc_id_to_value[str(row[bc_side.key])] = row.get(match_on)
    if "lcy" in wanted:
        table.blank_as = _lcy(rows[wanted["lcy"]])
    couplings = ctx.state.couplings(ref.name)
    if not couplings.empty:
        done = couplings[~couplings["pending"].astype(bool)].dropna(subset=["bc_id", "dv_id"])
        table.bc_to_dv = dict(zip(done["bc_id"].astype(str), done["dv_id"].astype(str),
                                  strict=True))
        table.dv_to_bc = {v: k for k, v in table.bc_to_dv.items()}
    if "dv" in wanted:
        dv_field = wanted["dv"][2][1]
        for row in rows[wanted["dv"]]:
            key = canon(row.get(dv_field)).lower()
            table.dv_by_value.setdefault(key, []).append(str(row[dv_side.key]))
            table.dv_value[str(row[dv_side.key])] = row.get(dv_field)
    return table


def _lcy(rows: list[dict[str, Any]]) -> str:
    """The company's local currency code (LCY) from its companyInformation row: what
    Business Central's API returns as a record's ``currencyCode`` when its Currency Code is
    blank (Learn: API v2.0 companyInformation, ``currencyCode``; customer ``currencyCode``)."""
    return str(rows[0].get("currencyCode") or "") if rows else ""

