"""Operations on single records and on all mappings (BC's manual synchronisation actions).

- ``sync_record``: BC's "Synchronize" on one record: a forced sync of just that record in the
  chosen direction (default: from the system the id belongs to); clears Skipped first.
- ``couple_record``: couple a record to a chosen record on the other side, then (optionally)
  synchronise the pair.

Uncouple, restore, "Synchronize All" and match-based coupling are service operations
(bcdv.service.records), always under the mapping's run lock.
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping

from bcdv.engine.context import PassSides, SyncContext
from bcdv.engine.report import PassReport
from bcdv.engine.runner import run_pass
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
