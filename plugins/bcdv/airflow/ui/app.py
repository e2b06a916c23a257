"""The bcdv pages in the Airflow UI: a FastAPI app mounted in the API server at ``/bcdv``.

Pages (server-rendered HTML, Jinja2): ``/bcdv/`` integration table mappings,
``/bcdv/mappings/{name}`` field mappings, ``/bcdv/couplings`` coupled records (search,
uncouple, restore, sync now), ``/bcdv/errors`` synchronisation errors (retry, remove coupling),
``/bcdv/log`` the synchronisation log with a chart, ``/bcdv/runs/{run_id}`` a triggered
record sync and its result. Who may see and do what: :mod:`bcdv.airflow.ui.security`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from bcdv import service
from bcdv.airflow.ui import airflow_api, security
from bcdv.airflow.ui.chart import records_chart
from bcdv.clients.odata import InvalidValue, guid
from bcdv.errors import BcdvError
from bcdv.service import views

URL_PREFIX = "/bcdv"
HERE = Path(__file__).resolve().parent
TERMINAL = {"success", "failed"}


@lru_cache(maxsize=4)
def _store(url: str) -> Any:
    from bcdv.state.store import StateStore

    return StateStore(url)


def store() -> Any:
    """The state store (``BCDV_STATE_URL`` / connection ``bcdv_state``, through the hooks)."""
    from bcdv.airflow.hooks import state_url

    return _store(state_url())


def mappings_dir() -> Path:
    """``BCDV_MAPPINGS_DIR``, else include/mappings beside the DAGs folder (as the DAGs)."""
    from airflow.configuration import conf

    from bcdv.airflow.tasks import mappings_dir as resolve

    return resolve(Path(conf.get("core", "dags_folder")) / "bcdv.py")


def mappings() -> dict[str, Any]:
    """The effective table mappings, by name."""
    from bcdv.mapping import load_mappings

    return load_mappings(mappings_dir())


def _mapping(name: str) -> Any:
    found = mappings().get(name.upper())
    if found is None:
        raise HTTPException(status_code=404, detail=f"no table mapping {name!r}")
    return found


def create_app() -> FastAPI:
    """The FastAPI app the Airflow plugin mounts."""
    app = FastAPI(title="bcdv", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.url_prefix = URL_PREFIX
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["chart"] = records_chart
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
                       skipped: bool = False) -> Response:
        m = _mapping(mapping)
        rows = views.list_couplings(store(), m, search=q, skipped=skipped, limit=200)
        return page(request, viewer_of(request), "couplings.html", m=m, rows=rows, q=q,
                    skipped=skipped, names=sorted(mappings()),
                    counts=store().counts(m.name))

    @app.get("/errors", response_class=HTMLResponse)
    def errors_page(request: Request, mapping: str = "", resolved: bool = False) -> Response:
        name = _mapping(mapping).name if mapping else None
        rows = store().errors(name, include_resolved=resolved, limit=500)
        return page(request, viewer_of(request), "errors.html", rows=rows, mapping=name or "",
                    resolved=resolved, names=sorted(mappings()))

    @app.get("/log", response_class=HTMLResponse)
    def log_page(request: Request, mapping: str = "") -> Response:
        name = _mapping(mapping).name if mapping else None
        jobs = store().jobs(name, limit=300)
        return page(request, viewer_of(request), "log.html", jobs=jobs, mapping=name or "",
                    names=sorted(mappings()))

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, run_id: str) -> Response:
        viewer = viewer_of(request)
        try:
            run = airflow_api.record_run(request, viewer.token, run_id)
            tasks = airflow_api.record_run_tasks(request, viewer.token, run_id)
            if run.get("state") == "queued" and airflow_api.record_dag_paused(
                    request, viewer.token):
                run["error"] = (f"{security.RECORD_DAG_ID} is paused in Airflow: the run "
                                "starts when the DAG is unpaused.")
        except airflow_api.AirflowApiError as exc:
            run, tasks = {"dag_run_id": run_id, "state": "unknown", "error": str(exc)}, []
        st = store()
        jobs = [{**j, "errors": views.errors_of_job(st, j["id"]),
                 "records": views.records_of_job(st, j["id"], limit=500)}
                for j in views.jobs_of_run(st, run_id)]
        done = run.get("state") in TERMINAL or run.get("state") == "unknown"
        return page(request, viewer, "run.html", run=run, tasks=tasks, jobs=jobs, done=done)

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
                                    run_id=_run_id(viewer))
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
                                    run_id=_run_id(viewer)):
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
                                   run_id=_run_id(viewer))
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

    return app


def _run_id(viewer: security.Viewer) -> str:
    """The lock owner of a page action: who did it, and a unique suffix."""
    who = "".join(c if c.isalnum() else "_" for c in viewer.name or "")
    return service.new_run_id(f"ui__{who[:40]}" if who else "ui")


def _nonce_cookie(resp: Response, viewer: security.Viewer) -> None:
    if viewer.new_nonce:
        resp.set_cookie(security.CSRF_COOKIE, viewer.nonce, httponly=True, samesite="strict",
                        path=URL_PREFIX)


app = create_app()
