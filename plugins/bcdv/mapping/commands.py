"""``bcdv mappings ...``: list, show, diff, reset and validate the effective mappings.

Exit codes: 0 ok; 1 error (an invalid mapping, a failed live check); 2 usage (unknown name);
3 ``diff`` found differences from the shipped defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bcdv.errors import MappingError
from bcdv.mapping.loader import (
    DEFAULTS_DIR,
    LoadedMapping,
    load_mapping_set,
    mapping_files,
    parse_mapping_file,
)
from bcdv.mapping.model import FieldMapping, TableMapping

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DIFFERENT = 0, 1, 2, 3


def mappings_dir(args: argparse.Namespace) -> Path:
    """The effective mappings: ``--mappings``, else the settings' (``BCDV_MAPPINGS_DIR``)."""
    from bcdv.settings import load_settings

    return Path(getattr(args, "mappings", None) or load_settings().mappings_dir)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _filters(m: TableMapping) -> str:
    parts = [f"BC: {m.business_central.filter}" if m.business_central.filter else "",
             f"Dataverse: {m.dataverse.filter}" if m.dataverse.filter else ""]
    return "; ".join(p for p in parts if p)


def table_row(m: TableMapping) -> dict[str, Any]:
    """One line of BC's Integration Table Mappings page."""
    return {"name": m.name, "business_central": m.business_central.entity_set,
            "direction": m.direction.value, "dataverse": m.dataverse.entity_set,
            "business_central_filter": m.business_central.filter,
            "dataverse_filter": m.dataverse.filter, "sync_only_coupled": m.sync_only_coupled,
            "schedule": m.schedule, "depends_on": list(m.depends_on),
            "update_conflicts": m.conflicts.update.value,
            "deletion_conflicts": m.conflicts.deletion.value, "fields": len(m.fields)}


def field_row(m: TableMapping, f: FieldMapping) -> dict[str, Any]:
    """One line of BC's Integration Field Mapping page."""
    if f.lookup is not None:
        via = (f"lookup {f.lookup.mapping} on {f.lookup.match_on or 'key'}"
               f" ({f.lookup.on_failure.value})")
        if f.navigation:
            via += f" as {f.navigation}"
    elif f.value_map is not None:
        via = f"value map {f.value_map}"
    else:
        via = ""
    transform = " | ".join(
        r.describe() + (f" [{r.direction.value}]" if r.direction else "") for r in f.transform)
    return {"business_central": f.business_central, "dataverse": f.dataverse,
            "direction": f.effective_direction.value, "constant": f.constant,
            "status": "enabled" if f.enabled else "disabled", "transformation": transform,
            "lookup_or_value_map": via}


def _load_set(args: argparse.Namespace) -> dict[str, LoadedMapping]:
    return load_mapping_set(mappings_dir(args))


def _named(mappings: dict[str, Any], name: str) -> str | None:
    key = name.upper()
    if key in mappings:
        return key
    print(f"unknown mapping {name!r}; known: {', '.join(sorted(mappings))}", file=sys.stderr)
    return None


def cmd_list(args: argparse.Namespace) -> int:
    """The Integration Table Mappings page."""
    rows = [table_row(item.mapping) for item in _load_set(args).values()]
    if args.json:
        _print_json(rows)
        return EXIT_OK
    head = ("NAME", "BUSINESS CENTRAL", "DIRECTION", "DATAVERSE", "ONLY COUPLED", "SCHEDULE",
            "DEPENDS ON")
    lines = [head] + [(r["name"], r["business_central"], r["direction"], r["dataverse"],
                       "yes" if r["sync_only_coupled"] else "no", r["schedule"] or "-",
                       ", ".join(r["depends_on"]) or "-") for r in rows]
    _print_table(lines)
    for r in rows:
        for side in ("business_central", "dataverse"):
            if r[f"{side}_filter"]:
                print(f"  {r['name']} {side} filter: {r[f'{side}_filter']}")
    return EXIT_OK


def _print_table(lines: list[tuple[Any, ...]]) -> None:
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def cmd_show(args: argparse.Namespace) -> int:
    """One table mapping and its Integration Field Mapping page."""
    loaded = _load_set(args)
    name = _named(loaded, args.name)
    if name is None:
        return EXIT_USAGE
    m = loaded[name].mapping
    fields = [field_row(m, f) for f in m.fields]
    if args.json:
        _print_json({**table_row(m), "file": str(loaded[name].path),
                     "mapping": m.model_dump(mode="json"), "field_rows": fields})
        return EXIT_OK
    r = table_row(m)
    print(f"{m.name}: {m.description}" if m.description else m.name)
    print(f"  {'file':<18} {loaded[name].path}")
    for label, key in (("Business Central", "business_central"), ("direction", "direction"),
                       ("Dataverse", "dataverse"), ("BC filter", "business_central_filter"),
                       ("Dataverse filter", "dataverse_filter"),
                       ("only coupled", "sync_only_coupled"), ("schedule", "schedule"),
                       ("depends on", "depends_on"), ("update conflicts", "update_conflicts"),
                       ("deletion conflicts", "deletion_conflicts")):
        value = r[key]
        if isinstance(value, list):
            value = ", ".join(value) or "-"
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        print(f"  {label:<18} {value if value not in (None, '') else '-'}")
    if m.coupling.match:
        crit = "; then ".join(f"{' and '.join(g.fields)}"
                              f"{' (case-sensitive)' if g.case_sensitive else ''}"
                              for g in sorted(m.coupling.match, key=lambda g: g.priority))
        print(f"  {'match on':<18} {crit}; create new if no match: "
              f"{'yes' if m.coupling.create_new_if_no_match else 'no'}")
    for system in ("business_central", "dataverse"):
        values = m.create_values_for(system)
        if values:
            print(f"  create {system.replace('_', ' ')} records with "
                  + ", ".join(f"{k}={v!r}" for k, v in values.items()))
    print()
    lines = [("BUSINESS CENTRAL", "DATAVERSE", "DIRECTION", "CONSTANT", "STATUS",
              "TRANSFORMATION", "LOOKUP / VALUE MAP")]
    lines += [(f["business_central"] or "", f["dataverse"] or "", f["direction"],
               "" if f["constant"] is None else f["constant"], f["status"],
               f["transformation"], f["lookup_or_value_map"]) for f in fields]
    _print_table(lines)
    for vm_name, vm in m.value_maps.items():
        pairs = ", ".join(f"{e.business_central}={e.dataverse}" for e in vm.values)
        print(f"  value map {vm_name} (unmapped: {vm.unmapped.value}): {pairs}")
    return EXIT_OK


# --- diff / reset -------------------------------------------------------------------------

def _flatten(m: TableMapping) -> dict[str, Any]:
    """Path -> value, with field mappings keyed by their field pair (stable under reordering)."""
    data = m.model_dump(mode="json")
    fields = data.pop("fields")
    out: dict[str, Any] = {}
    _walk(data, "", out)
    seen: dict[str, int] = {}
    for f in fields:
        key = f"{f['business_central'] or '(constant)'} -> {f['dataverse'] or '(constant)'}"
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            key += f" #{seen[key]}"
        _walk({k: v for k, v in f.items() if k not in ("business_central", "dataverse")},
              f"fields[{key}]", out)
    return out


def _walk(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _walk(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = value


def mapping_diff(local: TableMapping | None, shipped: TableMapping | None) -> list[dict[str, Any]]:
    """Changes from the shipped mapping to the local one, one entry per changed setting."""
    if local is None or shipped is None:
        return [{"path": "(mapping)", "shipped": "present" if shipped else "absent",
                 "local": "present" if local else "absent"}]
    a, b = _flatten(shipped), _flatten(local)
    out = []
    for path in sorted(set(a) | set(b), key=lambda p: (p.startswith("fields["), p)):
        if a.get(path, "(absent)") != b.get(path, "(absent)"):
            out.append({"path": path, "shipped": a.get(path, "(absent)"),
                        "local": b.get(path, "(absent)")})
    return out


def _index(directory: Path) -> dict[str, tuple[Path, TableMapping | None, str | None]]:
    """name -> (file, mapping or None, error) for every file; invalid files by file stem."""
    out: dict[str, tuple[Path, TableMapping | None, str | None]] = {}
    for p in mapping_files(directory):
        try:
            m = parse_mapping_file(p).mapping
            out[m.name] = (p, m, None)
        except MappingError as exc:
            out[p.stem.upper()] = (p, None, str(exc))
    return out


def _diffs(args: argparse.Namespace, name: str | None) -> tuple[list[dict[str, Any]], bool]:
    local, shipped = _index(mappings_dir(args)), _index(DEFAULTS_DIR)
    names = sorted(set(local) | set(shipped))
    if name is not None:
        key = name.upper()
        if key not in names:
            print(f"unknown mapping {name!r}; known: {', '.join(names)}", file=sys.stderr)
            return [], False
        names = [key]
    out = []
    for n in names:
        lp, lm, lerr = local.get(n, (None, None, None))
        sp, sm, _ = shipped.get(n, (None, None, None))
        if lerr:
            changes = [{"path": "(file)", "shipped": "valid", "local": lerr}]
        else:
            changes = mapping_diff(lm, sm)
        out.append({"name": n, "local_file": str(lp) if lp else None,
                    "shipped_file": str(sp) if sp else None,
                    "status": "identical" if not changes else "invalid" if lerr else
                    ("local only" if sp is None else "missing locally" if lp is None
                     else "changed"),
                    "changes": changes})
    return out, True


def _print_diffs(diffs: list[dict[str, Any]]) -> None:
    for d in diffs:
        print(f"{d['name']}: {d['status']}")
        if d["status"] == "invalid":
            print(f"  {d['changes'][0]['local']}")
        if d["status"] != "changed":
            continue
        for c in d["changes"]:
            print(f"  {c['path']}: {json.dumps(c['shipped'], default=str)} -> "
                  f"{json.dumps(c['local'], default=str)}")


def cmd_diff(args: argparse.Namespace) -> int:
    """Local mappings against the shipped defaults; exit 3 when they differ."""
    diffs, ok = _diffs(args, args.name)
    if not ok:
        return EXIT_USAGE
    if args.json:
        _print_json(diffs)
    else:
        _print_diffs(diffs)
    return EXIT_OK if all(d["status"] == "identical" for d in diffs) else EXIT_DIFFERENT


def cmd_reset(args: argparse.Namespace) -> int:
    """BC's "Use Default Synchronization Setup": restore shipped files, print what changed.

    The same reset as the pages (``bcdv.service.mappings``): the user's file is copied to
    ``backups/`` first, and each mapping's run lock is held while its file is replaced."""
    from bcdv.commands.common import open_store
    from bcdv.service.mappings import reset_to_default, shipped_names

    if bool(args.name) == bool(args.all):
        print("reset needs a mapping name or --all", file=sys.stderr)
        return EXIT_USAGE
    directory = mappings_dir(args)
    shipped = shipped_names()
    names = shipped if args.all else [args.name.upper()]
    if names[0] not in shipped:
        print(f"{args.name!r} is not a shipped mapping; shipped: {', '.join(shipped)}",
              file=sys.stderr)
        return EXIT_USAGE
    store = open_store(args)
    report: list[dict[str, Any]] = []
    for n in names:
        done = reset_to_default(store, directory, n)
        report.append({"name": n, "file": str(done.plan.file), "was": done.plan.status,
                       "reverted": done.plan.changes,
                       "backup": str(done.backup) if done.backup else None})
    if args.json:
        _print_json(report)
        return EXIT_OK
    for r in report:
        if r["was"] == "identical":
            print(f"{r['name']}: already the shipped default ({r['file']})")
        elif r["was"] == "missing locally":
            print(f"{r['name']}: restored {r['file']}")
        else:
            print(f"{r['name']}: reset {r['file']} (your file is kept as {r['backup']})")
            for c in r["reverted"]:
                print(f"  {c['path']}: {json.dumps(c['local'], default=str)} -> "
                      f"{json.dumps(c['shipped'], default=str)}")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate the directory (and, with --live, against the services' metadata)."""
    directory = mappings_dir(args)
    loaded = load_mapping_set(directory)
    if not args.live:
        if args.json:
            _print_json({"valid": True, "mappings": sorted(loaded)})
        else:
            print(f"{len(loaded)} mapping(s) valid in {directory}")
        return EXIT_OK
    from bcdv.mapping.live import validate_live
    from bcdv.settings import endpoints_from_env

    findings = validate_live(loaded, endpoints_from_env())
    errors = [f for f in findings if f.level == "error"]
    if args.json:
        _print_json({"valid": not errors, "mappings": sorted(loaded),
                     "findings": [f.to_dict() for f in findings]})
    else:
        for f in findings:
            print(str(f))
        print(f"{len(loaded)} mapping(s) checked against live metadata: {len(errors)} error(s), "
              f"{len(findings) - len(errors)} warning(s)")
    return EXIT_ERROR if errors else EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``mappings`` command to the CLI's subparsers."""
    p = sub.add_parser("mappings", help="list, show, diff, reset or validate the mappings")
    p.set_defaults(func=cmd_list)
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    def add(name: str, func: Callable[[argparse.Namespace], int],
            help_text: str) -> argparse.ArgumentParser:
        a = actions.add_parser(name, help=help_text)
        # Also accept --json after the action; the main parser's value stands otherwise.
        a.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help="machine-readable output")
        a.set_defaults(func=func)
        return a

    add("list", cmd_list, "the table mappings (BC's Integration Table Mappings page)")
    a = add("show", cmd_show, "one mapping and its field mappings")
    a.add_argument("name")
    a = add("diff", cmd_diff, "local mappings against the shipped defaults (exit 3 if different)")
    a.add_argument("name", nargs="?")
    a = add("reset", cmd_reset, "restore shipped defaults (BC's Use Default Synchronization "
                                "Setup)")
    a.add_argument("name", nargs="?")
    a.add_argument("--all", action="store_true", help="every shipped mapping")
    a = add("validate", cmd_validate, "validate the mappings")
    a.add_argument("--live", action="store_true",
                   help="also check every field against the services' metadata "
                        "(BCDV_ENDPOINTS or BCDV_* environment)")
