"""Operations on single records and on all mappings (BC's manual synchronisation actions).

- ``sync_record``: BC's "Synchronize" on one record: a forced sync of just that record in the
  chosen direction (default: from the system the id belongs to); clears Skipped first.
- ``couple_record``: couple a record to a chosen record on the other side, then (optionally)
  synchronise the pair.
- ``uncouple_record`` / ``restore_record``: BC's "Delete Coupling" and "Restore".
- ``sync_all``: every mapping in dependency order (BC: "Synchronize Modified Records").
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping
from typing import Any

from bcdv.engine.context import PassSides, SyncContext
from bcdv.engine.report import PassReport
from bcdv.engine.runner import run_pass, sync_mapping
from bcdv.errors import BcdvError, ConfigError
from bcdv.mapping.model import Direction, TableMapping

SYSTEMS = ("business_central", "dataverse")


def dependency_waves(mappings: Mapping[str, TableMapping]) -> list[list[str]]:
    """Mapping names grouped in waves: each wave depends only on earlier waves."""
    sorter = graphlib.TopologicalSorter(
        {name: [d for d in m.depends_on if d in mappings] for name, m in mappings.items()})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        raise ConfigError(f"mapping dependency cycle: {' -> '.join(exc.args[1])}") from None
    waves = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        waves.append(ready)
        sorter.done(*ready)
    return waves


def sync_all(ctx: SyncContext, mappings: Mapping[str, TableMapping], *,
             mode: str = "modified", dry_run: bool = False,
             run_id: str | None = None) -> list[PassReport]:
    """Synchronise every mapping, dependencies first."""
    reports: list[PassReport] = []
    for wave in dependency_waves(mappings):
        for name in wave:
            reports.extend(sync_mapping(ctx, mappings[name], mode=mode, dry_run=dry_run,
                                        run_id=run_id))
    return reports


def synchronize_all_records(ctx: SyncContext, mapping: TableMapping, *,
                            run_id: str | None = None) -> list[PassReport]:
    """BC's "Synchronize All": clear both watermarks, then a normal run over every record
    (coupled records that did not change stay unchanged; nothing is forced)."""
    ctx.state.reset_watermarks(mapping.name)
    return sync_mapping(ctx, mapping, run_id=run_id)


def couple_by_match(ctx: SyncContext, mapping: TableMapping, *,
                    run_id: str | None = None) -> tuple[Any, list[PassReport]]:
    """BC's "Match-Based Coupling" action: couple uncoupled records on the match criteria,
    create the unmatched ones when the mapping says so, then (if ``sync_after_coupling``)
    synchronise the new pairs: in the mapping's direction, or for a bidirectional mapping
    the side its update-conflict resolution favours (both ways when it favours none)."""
    from bcdv.engine.coupling import match_couple
    from bcdv.mapping.model import UpdateConflict

    report = match_couple(ctx, mapping, run_id=run_id)
    reports: list[PassReport] = []
    if mapping.coupling.create_new_if_no_match and report.unmatched_ids:
        first = mapping.passes()[0]
        source = "business_central" if first is Direction.TO_DATAVERSE else "dataverse"
        if source == "business_central":
            reports.append(run_pass(ctx, mapping, first, mode="record",
                                    record_ids=report.unmatched_ids, run_id=run_id))
    if mapping.coupling.sync_after_coupling and report.pairs:
        directions = mapping.passes()
        if mapping.direction is Direction.BIDIRECTIONAL:
            favour = {UpdateConflict.BUSINESS_CENTRAL_WINS: [Direction.TO_DATAVERSE],
                      UpdateConflict.DATAVERSE_WINS: [Direction.TO_BUSINESS_CENTRAL]}
            directions = favour.get(mapping.conflicts.update, directions)
        for direction in directions:
            index = 0 if direction is Direction.TO_DATAVERSE else 1
            ids = [pair[index] for pair in report.pairs]
            reports.append(run_pass(ctx, mapping, direction, mode="record", record_ids=ids,
                                    run_id=run_id))
    return report, reports


def _default_direction(mapping: TableMapping, system: str) -> Direction:
    wanted = Direction.TO_DATAVERSE if system == "business_central" else (
        Direction.TO_BUSINESS_CENTRAL)
    if mapping.direction.includes(wanted):
        return wanted
    return mapping.passes()[0]


def _check_system(system: str) -> None:
    if system not in SYSTEMS:
        raise ConfigError(f"unknown system {system!r}; allowed: {', '.join(SYSTEMS)}")


def sync_record(ctx: SyncContext, mapping: TableMapping, *, system: str, record_id: str,
                direction: Direction | None = None, dry_run: bool = False,
                run_id: str | None = None) -> PassReport:
    """Force-synchronise one record (a temporary, single-record run; watermarks untouched)."""
    _check_system(system)
    direction = direction or _default_direction(mapping, system)
    if not mapping.direction.includes(direction):
        raise ConfigError(f"mapping {mapping.name} is not configured for "
                          f"{direction.value} synchronisation")
    sides = PassSides.of(mapping, direction)
    source_id = record_id
    if sides.source_system != system:
        column = "bc_id" if system == "business_central" else "dv_id"
        found = ctx.state.couplings(mapping.name, **{f"{column}s": [record_id]})
        if found.empty or found["pending"].astype(bool).iat[0]:
            raise BcdvError(f"{record_id} is not coupled in {mapping.name}: couple it first or "
                            f"synchronise it from {sides.source_system}")
        source_id = str(found[sides.source_id_col].iat[0])
    if not dry_run:
        by_bc = sides.source_id_col == "bc_id"
        ctx.state.restore(mapping.name, bc_id=source_id if by_bc else None,
                          dv_id=None if by_bc else source_id)
    return run_pass(ctx, mapping, direction, mode="record", record_ids=[source_id],
                    dry_run=dry_run, run_id=run_id)


def couple_record(ctx: SyncContext, mapping: TableMapping, *, bc_id: str, dv_id: str,
                  synchronize: Direction | None = None) -> PassReport | None:
    """Couple a Business Central record to a chosen Dataverse row, then optionally sync it."""
    bc_side, dv_side = mapping.business_central, mapping.dataverse
    if not ctx.business_central.fetch(bc_side, [bc_id], [bc_side.key]):
        raise BcdvError(f"Business Central {bc_side.entity_set} {bc_id} does not exist")
    if not ctx.dataverse.fetch(dv_side, [dv_id], [dv_side.key]):
        raise BcdvError(f"Dataverse {dv_side.entity_set} {dv_id} does not exist")
    if not ctx.state.couple(mapping.name, bc_id, dv_id):
        raise BcdvError(f"cannot couple: {bc_id} or {dv_id} is already coupled in "
                        f"{mapping.name}; remove that coupling first")
    if synchronize is None:
        return None
    record = bc_id if synchronize is Direction.TO_DATAVERSE else dv_id
    system = "business_central" if synchronize is Direction.TO_DATAVERSE else "dataverse"
    return sync_record(ctx, mapping, system=system, record_id=record, direction=synchronize)


def uncouple_record(ctx: SyncContext, mapping: TableMapping, *, bc_id: str | None = None,
                    dv_id: str | None = None) -> int:
    """Remove the coupling of a record (by either id); returns how many were removed."""
    if not (bc_id or dv_id):
        raise ConfigError("give a Business Central id or a Dataverse id")
    return ctx.state.remove_coupling(mapping.name, bc_id=bc_id, dv_id=dv_id)


def restore_record(ctx: SyncContext, mapping: TableMapping, *, bc_id: str | None = None,
                   dv_id: str | None = None) -> int:
    """Clear Skipped on a record's coupling so the next run retries it (BC: Restore)."""
    if not (bc_id or dv_id):
        raise ConfigError("give a Business Central id or a Dataverse id")
    return ctx.state.restore(mapping.name, bc_id=bc_id, dv_id=dv_id)
