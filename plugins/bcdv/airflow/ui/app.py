"""The bcdv pages in the Airflow UI: a FastAPI app mounted in the API server at ``/bcdv``.

Pages (server-rendered HTML, Jinja2): ``/bcdv/`` integration table mappings,
``/bcdv/mappings/{name}`` field mappings (and ``.../reset``: reset to the shipped default,
confirmed), ``/bcdv/couplings`` coupled records (search, uncouple, restore, Restore All, sync
now), ``/bcdv/couple`` couple a record to one found by name, ``/bcdv/errors`` synchronisation
errors (retry, Retry all, remove coupling), ``/bcdv/log`` the synchronisation log with a
chart, ``/bcdv/runs/{run_id}`` one Airflow run of any bcdv DAG (or of a user's DAG with
the bcdv operators): its state and tasks, its jobs and their errors, and each job's records
(action, field changes old -> new) filtered by action and paged (:mod:`bcdv.airflow.ui.runs`).
The lists are paged and filtered by query parameters (:mod:`bcdv.airflow.ui.lists`); the bulk
and set-up actions are in :mod:`bcdv.airflow.ui.actions`. Who may see and do what:
:mod:`bcdv.airflow.ui.security`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from bcdv import service
from bcdv.airflow.ui import actions, airflow_api, lists, runs, security
from bcdv.airflow.ui.chart import records_chart
from bcdv.airflow.ui.context import _mapping, mappings, run_id_of, store
from bcdv.airflow.ui.context import _store as _store  # re-exported: the tests clear it
from bcdv.airflow.ui.context import mappings_dir as mappings_dir
from bcdv.clients.odata import InvalidValue, guid
from bcdv.errors import BcdvError
from bcdv.service import views
from bcdv.state.pages import COUPLING_STATUSES, ERROR_STATUSES, JOB_STATUSES, ListFilter

URL_PREFIX = "/bcdv"
HERE = Path(__file__).resolve().parent


def create_app() -> FastAPI:
    """The FastAPI app the Airflow plugin mounts."""
    app = FastAPI(title="bcdv", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.url_prefix = URL_PREFIX
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["chart"] = records_chart
    templates.env.globals["with_query"] = lists.with_query
    templates.env.globals["page_sizes"] = views.PAGE_SIZES
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def page(request: Request, viewer: security.Viewer, name: str, **ctx: Any) -> Response:
        resp = templates.TemplateResponse(request, name, {
            "viewer": viewer, "prefix": URL_PREFIX, "csrf_field": security.CSRF_FIELD,
            "message": request.query_params.get("msg"),
            "failure": request.query_params.get("err"), **ctx})
        _nonce_cookie(resp, viewer)
        resp.headers["Cache-Control"] = "no-store"
        # No script at all; framed only by Airflow's own UI; forms post only to us.
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' data:; "
            "frame-ancestors 'self'; form-action 'self'; base-uri 'none'")
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "same-origin"
        return resp

    @app.middleware("http")
    async def require_user(request: Request, call_next: Any) -> Response:
        if request.url.path.startswith(f"{URL_PREFIX}/static") or request.url.path.startswith(
                "/static"):
            return await call_next(request)
        viewer = await security.authenticate(request)
        if viewer is None:
            if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                return RedirectResponse(security.login_url(request), status_code=303)
            return Response("not signed in to Airflow", status_code=401)
        if not security.is_authorized(viewer.user, "GET"):
            return Response("you may not read the bcdv runs", status_code=403)
        request.state.viewer = viewer
        return await call_next(request)

    def viewer_of(request: Request) -> security.Viewer:
        return request.state.viewer

    async def action(request: Request) -> tuple[security.Viewer, dict[str, Any]]:
        viewer = viewer_of(request)
        form = dict(await request.form())
        security.check_csrf(request, viewer, form)
        if not viewer.can_trigger:
            raise HTTPException(status_code=403, detail="you need permission to trigger "
                                                        f"{security.RECORD_DAG_ID} for this")
        return viewer, form

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> Response:
        st = store()
        rows = [views.overview(st, m) for m in mappings().values()]
        return page(request, viewer_of(request), "mappings.html", rows=rows)

    @app.get("/mappings/{name}", response_class=HTMLResponse)
    def mapping_page(request: Request, name: str) -> Response:
        from bcdv.mapping.commands import field_row

        m = _mapping(name)
        return page(request, viewer_of(request), "fields.html", m=m,
                    row=views.overview(store(), m), fields=[field_row(m, f) for f in m.fields])

    @app.get("/couplings", response_class=HTMLResponse)
    def couplings_page(request: Request, mapping: str = "CUSTOMER", q: str = "",
                       status: str = "", skipped: bool = False) -> Response:
        m = _mapping(mapping)
        if skipped and not status:  # the links of earlier versions
            status = "skipped"
        since, until, bad = lists.window(request)
        flt = views.coupling_filter(m, search=q, status=status, since=since, until=until)
        rows = views.coupling_page(store(), m, flt, **lists.paging(request))
        return page(request, viewer_of(request), "couplings.html", m=m, rows=rows, q=q,
                    status=status, statuses=COUPLING_STATUSES, names=sorted(mappings()),
                    counts=store().counts(m.name), bad_filter=bad)

    @app.get("/errors", response_class=HTMLResponse)
    def errors_page(request: Request, mapping: str = "", status: str = "open", code: str = "",
                    q: str = "", resolved: bool = False) -> Response:
        name = _mapping(mapping).name if mapping else None
        if resolved and status == "open":  # the links of earlier versions
            status = "all"
        since, until, bad = lists.window(request)
        flt = ListFilter(mapping=name, status=status, code=code, search=q, since=since,
                         until=until)
        rows = views.error_page(store(), flt, **lists.paging(request))
        # The run that last saw each error (one query for the page's jobs).
        seen_in = views.jobs_by_id(store(), [str(e.get("job_id") or "") for e in rows.rows])
        dags = mapping_dags()
        for e in rows.rows:
            job = seen_in.get(str(e.get("job_id") or ""))
            e["run_id"] = job["run_id"] if job else None
            e["dag_id"] = views.dag_of_job(job, dags) if job else None
        return page(request, viewer_of(request), "errors.html", rows=rows, mapping=name or "",
                    status=status, statuses=ERROR_STATUSES, code=code, q=q,
                    codes=store().error_codes(name), names=sorted(mappings()), bad_filter=bad)

    @app.get("/log", response_class=HTMLResponse)
    def log_page(request: Request, mapping: str = "", status: str = "", q: str = "") -> Response:
        name = _mapping(mapping).name if mapping else None
        since, until, bad = lists.window(request)
        flt = ListFilter(mapping=name, status=status, search=q, since=since, until=until)
        jobs = views.job_page(store(), flt, **lists.paging(request))
        dags = mapping_dags()
        for row in jobs.rows:
            row["dag_id"] = views.dag_of_job(row, dags)
        return page(request, viewer_of(request), "log.html", jobs=jobs, mapping=name or "",
                    status=status, statuses=JOB_STATUSES, q=q, names=sorted(mappings()),
                    bad_filter=bad)

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str, dag_id: str = "", job: str = "",
                 action: str = "", failed: bool = False) -> Response:
        viewer = viewer_of(request)
        st = store()
        dags = mapping_dags()
        view = runs.locate(request, viewer.token, st, run_id, dag_id.strip() or None, dags)
        jobs = runs.with_details(st, view)
        chosen = runs.chosen_job(st, jobs, job)
        actions_of = views.record_actions_of_job(st, chosen["id"]) if chosen else {}
        failures = views.count_records_of_job(st, chosen["id"], failed=True) if chosen else 0
        records = (views.record_page(st, chosen["id"], action=action or None, failed=failed,
                                     **lists.paging(request)) if chosen else None)
        return page(request, viewer, "run.html", view=view, run=view.run, tasks=view.tasks,
                    jobs=jobs, chosen=chosen, action=action, actions=actions_of,
                    failed=failed, failures=failures, records=records, done=view.done)

    # -- actions (POST, CSRF token, trigger permission) --------------------------------
    def back(request: Request, form: dict[str, Any], **query: str) -> RedirectResponse:
        target = str(form.get("next") or f"{URL_PREFIX}/")
        if not target.startswith(URL_PREFIX + "/"):
            target = f"{URL_PREFIX}/"
        sep = "&" if "?" in target else "?"
        return RedirectResponse(f"{target}{sep}{urlencode(query)}", status_code=303)

    @app.post("/couplings/uncouple")
    async def uncouple(request: Request) -> Response:
        viewer, form = await action(request)
        m = _mapping(str(form.get("mapping", "")))
        try:
            done = service.uncouple(store(), m, str(form.get("record_id", "")),
                                    run_id=run_id_of(viewer))
        except BcdvError as exc:  # not a GUID; the mapping locked by a running sync
            return back(request, form, err=str(exc))
        if done.coupling is None:
            return back(request, form, err="that record is not coupled")
        return back(request, form, msg=f"Uncoupled {done.name or done.bc_id} "
                                       f"({done.bc_id} ↔ {done.dv_id}).",
                    uncoupled_bc=done.bc_id or "", uncoupled_dv=done.dv_id or "")

    @app.post("/couplings/recouple")
    async def recouple(request: Request) -> Response:
        viewer, form = await action(request)
        m = _mapping(str(form.get("mapping", "")))
        bc_id, dv_id = str(form.get("bc_id", "")), str(form.get("dv_id", ""))
        try:  # the ids reach OData URLs on the next run: GUIDs only (checked by the service)
            if not service.recouple(store(), m, bc_id=bc_id, dv_id=dv_id,
                                    run_id=run_id_of(viewer)):
                return back(request, form, err=f"{bc_id} or {dv_id} is already coupled")
        except BcdvError as exc:
            return back(request, form, err=str(exc))
        return back(request, form, msg=f"Coupled {bc_id.lower()} ↔ {dv_id.lower()} again.")

    @app.post("/couplings/restore")
    async def restore(request: Request) -> Response:
        viewer, form = await action(request)
        m = _mapping(str(form.get("mapping", "")))
        try:
            done = service.restore(store(), m, str(form.get("record_id", "")),
                                   run_id=run_id_of(viewer))
        except BcdvError as exc:
            return back(request, form, err=str(exc))
        if done.coupling is None:
            return back(request, form, err="that record is not coupled")
        return back(request, form, msg=f"Restored {done.name or done.bc_id}: the next "
                    "run retries it." if done.changed else "Nothing to restore: the record is "
                    "not skipped.")

    @app.post("/sync")
    async def sync_now(request: Request) -> Response:
        viewer, form = await action(request)
        m = _mapping(str(form.get("mapping", "")))
        side = str(form.get("side", ""))
        if side not in ("business_central", "dataverse"):
            raise HTTPException(status_code=400, detail="side must be business_central or "
                                                        "dataverse")
        try:
            record_id = guid(str(form.get("record_id", "")), "record_id")
        except InvalidValue as exc:
            return back(request, form, err=str(exc))
        conf = {"mapping": m.name, "side": side, "record_id": record_id, "action": "sync"}
        try:
            # Not on the event loop: the API server answers this very call.
            run_id = await run_in_threadpool(airflow_api.trigger_record_sync, request,
                                             viewer.token, conf)
        except airflow_api.AirflowApiError as exc:
            return back(request, form, err=str(exc))
        return RedirectResponse(f"{URL_PREFIX}/runs/{run_id}", status_code=303)

    actions.register(app, actions.Kit(page=page, action=action, back=back,
                                      viewer_of=viewer_of))
    return app


def mapping_dags() -> dict[str, str]:
    """Each table mapping's DAG id, by mapping name."""
    return {m.name: m.dag_id for m in mappings().values()}


def _nonce_cookie(resp: Response, viewer: security.Viewer) -> None:
    if viewer.new_nonce:
        resp.set_cookie(security.CSRF_COOKIE, viewer.nonce, httponly=True, samesite="strict",
                        path=URL_PREFIX)


app = create_app()
