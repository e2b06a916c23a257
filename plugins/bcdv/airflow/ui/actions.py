"""The pages' bulk and set-up actions: Restore All, Retry all, reset a mapping to its defaults
(confirmed, with a backup of the user's file) and couple a record to one found by name.

Every action is a POST with the CSRF token and the trigger permission (``Kit.action``), and
every write goes through the service layer, which holds the mapping's run lock. The actions
that reach Business Central or Dataverse run in a worker thread, on a SyncContext built from
the Airflow connections (``bcdv.airflow.hooks``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from bcdv import service
from bcdv.airflow.ui import security
from bcdv.airflow.ui.context import _mapping, mappings, mappings_dir, run_id_of, store
from bcdv.errors import BcdvError
from bcdv.service import mappings as mapping_files
from bcdv.service import validate, views
from bcdv.state.pages import ListFilter

RETRY_LIMIT = 100
"""Errors one "Retry all" retries (each is a record sync); the rest wait for another click."""


@dataclass(frozen=True)
class Kit:
    """What the app's routes share: render a page, check an action, redirect back."""

    page: Callable[..., Response]
    action: Callable[[Request], Any]
    back: Callable[..., RedirectResponse]
    viewer_of: Callable[[Request], security.Viewer]


@contextmanager
def _context() -> Iterator[Any]:
    from bcdv.airflow.hooks import sync_context

    ctx = sync_context(mappings())
    try:
        yield ctx
    finally:
        ctx.close()


def _retry(flt: ListFilter, run_id: str) -> tuple[int, int, int]:
    """Retry the open errors under ``flt`` (at most RETRY_LIMIT); returns (matched, retried,
    resolved)."""
    ids = store().error_ids(flt)
    chosen = ids[:RETRY_LIMIT]
    if chosen:
        with _context() as ctx:
            service.retry(ctx, mappings(), chosen, run_id=run_id)
    rows = [views.error(store(), i) for i in chosen]
    return len(ids), len(chosen), sum(1 for r in rows if r and r["resolved"])


def _couple(mapping: Any, bc_id: str, dv_id: str, run_id: str) -> Any:
    from bcdv.service.records import default_sync_direction

    with _context() as ctx:
        return service.couple(ctx, mapping, bc_id=bc_id, dv_id=dv_id, run_id=run_id,
                              synchronize=default_sync_direction(mapping, "business_central"))


def _find(mapping: Any, bc_q: str, bc_id: str, dv_q: str) -> dict[str, Any]:
    """The couple page's look-ups: BC records by name, the picked one, Dataverse matches."""
    out: dict[str, Any] = {"bc_rows": [], "picked": None, "dv_rows": [], "dv_q": dv_q}
    with _context() as ctx:
        if bc_q:
            out["bc_rows"] = views.search_records(ctx, mapping, "business_central", bc_q)
        if bc_id:
            out["picked"] = views.get_record(ctx, mapping, "business_central", bc_id)
            if out["picked"] is not None:
                out["picked"]["coupled"] = (ctx.state.coupling(mapping.name, bc_id=bc_id)
                                            or {}).get("dv_id")
                out["dv_q"] = dv_q or out["picked"]["name"]
                out["dv_rows"] = views.search_records(ctx, mapping, "dataverse",
                                                      out["dv_q"])
    return out


def register(app: FastAPI, kit: Kit) -> None:
    """Add the actions' routes to the app."""

    @app.post("/couplings/restore-all")
    async def restore_all(request: Request) -> Response:
        viewer, form = await kit.action(request)
        m = _mapping(str(form.get("mapping", "")))
        try:
            done = service.restore_all(store(), m, run_id=run_id_of(viewer))
        except BcdvError as exc:
            return kit.back(request, form, err=str(exc))
        return kit.back(request, form, msg=f"Restored {done} skipped record(s) of {m.name}: "
                        "the next run retries them." if done else
                        f"Nothing to restore: no record of {m.name} is skipped.")

    @app.post("/errors/retry-all")
    async def retry_all(request: Request) -> Response:
        viewer, form = await kit.action(request)
        m = _mapping(str(form.get("mapping", "")))
        try:
            since, until = views.day_window(form.get("from"), form.get("to"))
            flt = ListFilter(mapping=m.name, status="open", code=str(form.get("code") or ""),
                             search=str(form.get("q") or ""), since=since, until=until)
            matched, retried, resolved = await run_in_threadpool(_retry, flt,
                                                                 run_id_of(viewer))
        except (BcdvError, ValueError) as exc:
            return kit.back(request, form, err=str(exc))
        if not matched:
            return kit.back(request, form, msg=f"No open error of {m.name} to retry.")
        more = (f" {matched - retried} more match: press Retry all again."
                if matched > retried else "")
        return kit.back(request, form, msg=f"Retried {retried} error(s) of {m.name}: "
                        f"{resolved} resolved, {retried - resolved} still failing.{more}")

    @app.get("/mappings/{name}/reset", response_class=HTMLResponse)
    def reset_confirm(request: Request, name: str) -> Response:
        try:
            plan = mapping_files.reset_plan(mappings_dir(), name)
        except BcdvError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return kit.page(request, kit.viewer_of(request), "reset.html", plan=plan,
                        backups=mappings_dir() / mapping_files.BACKUPS)

    @app.post("/mappings/{name}/reset")
    async def reset(request: Request, name: str) -> Response:
        viewer, form = await kit.action(request)
        if str(form.get("confirm", "")).upper() != name.upper():
            return kit.back(request, form, err="not reset: the confirmation did not name "
                                               f"the mapping {name.upper()}")
        try:
            done = mapping_files.reset_to_default(store(), mappings_dir(), name,
                                                  run_id=run_id_of(viewer))
        except BcdvError as exc:
            return kit.back(request, form, err=str(exc))
        if done.backup is None and done.plan.status == "identical":
            text = f"{done.plan.name} already is the shipped default: nothing was changed."
        elif done.backup is None:
            text = f"{done.plan.name}: the shipped default was written to {done.plan.file}."
        else:
            text = (f"{done.plan.name} was reset to the shipped default ({done.plan.file}). "
                    f"Your file was saved as {done.backup}.")
        return kit.back(request, form, msg=text, backup=str(done.backup or ""))

    @app.get("/couple", response_class=HTMLResponse)
    def couple_page(request: Request, mapping: str = "CUSTOMER", bc_q: str = "",
                    bc_id: str = "", dv_q: str = "") -> Response:
        m = _mapping(mapping)
        found: dict[str, Any] = {"bc_rows": [], "picked": None, "dv_rows": [], "dv_q": dv_q}
        problem = None
        try:
            found = _find(m, bc_q.strip(), validate.record_id(bc_id, "bc_id")
                          if bc_id else "", dv_q.strip())
        except BcdvError as exc:
            problem = str(exc)
        return kit.page(request, kit.viewer_of(request), "couple.html", m=m, bc_q=bc_q,
                        bc_id=bc_id, names=sorted(mappings()), problem=problem,
                        limit=views.SEARCH_LIMIT, **found)

    @app.post("/couple")
    async def couple(request: Request) -> Response:
        viewer, form = await kit.action(request)
        m = _mapping(str(form.get("mapping", "")))
        bc_id, dv_id = str(form.get("bc_id", "")), str(form.get("dv_id", ""))
        try:
            done = await run_in_threadpool(_couple, m, bc_id, dv_id, run_id_of(viewer))
        except BcdvError as exc:
            return kit.back(request, form, err=str(exc))
        report = done.report
        synced = (f" and synchronised {report.direction}: inserted {report.inserted}, "
                  f"modified {report.modified}, unchanged {report.unchanged}, failed "
                  f"{report.failed}" if report is not None else "")
        target = {"next": f"{request.app.state.url_prefix}/couplings?mapping={m.name}"}
        return kit.back(request, target, q=done.bc_id,
                        msg=f"Coupled {done.bc_id} ↔ {done.dv_id}{synced}.")


__all__ = ["RETRY_LIMIT", "Kit", "register"]
