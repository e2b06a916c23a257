"""Business Central webhooks: ``subscriptions`` with the validation handshake and batched
change notifications (reference A.14 / D.15).

- ``POST .../api/v2.0/subscriptions`` {notificationUrl, resource, clientState}: the emulator
  POSTs (empty body) to ``notificationUrl?validationToken=<t>``, as BC does (the token goes on
  the query string, dynamics-subscriptions.md; the request is a POST, not a GET, as
  MicrosoftDocs/dynamics365smb-devitpro-pb#264 records), and needs 200 with ``<t>`` as the
  body, then answers 201; ``expirationDateTime`` = now + 3 days.
  ``PATCH subscriptions('<id>')`` (If-Match required) renews with a new handshake;
  ``DELETE`` unsubscribes; GET lists/reads.
- Supported resources are the documented list (contacts and salespeoplePurchasers are not).
- Changes are queued only when their transaction commits: a write that an
  ``Isolation: snapshot`` $batch rolls back is never notified.
- Notifications are POSTed ``bc_webhook_delay_seconds`` (default 30) after the first change:
  ``{"value": [{subscriptionId, clientState, expirationDateTime, resource, changeType,
  lastModifiedDateTime}]}``, changeType created/updated/deleted, or one ``collection``
  entry when more than 1,000 records changed. A subscriber answering anything other than
  2xx, 408, 429 or 5xx loses its subscription; those codes are retried.
- Outbound calls use ``verify=bc_webhook_ca_bundle`` (option) or requests' default.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import requests

from bcdv_emulators.base import Req, Resp, strict_json
from bcdv_emulators.bc.values import SUCCESS_CT, BCError, format_datetime

if TYPE_CHECKING:
    from bcdv_emulators.bc.service import BCService

SUPPORTED = {"accounts", "companyInformation", "countriesRegions", "currencies",
             "customerPaymentJournals", "customers", "dimensions", "employees",
             "generalLedgerEntries", "itemCategories", "items", "journals", "paymentMethods",
             "paymentTerms", "purchaseInvoices", "salesCreditMemos", "salesInvoices",
             "salesOrders", "salesQuotes", "shipmentMethods", "unitsOfMeasure", "vendors"}
LIFETIME_MS = 3 * 86400 * 1000
COLLECTION_THRESHOLD = 1000


class Webhooks:
    """Subscriptions (kept in the BC database) and the notification dispatcher thread."""

    def __init__(self, svc: BCService) -> None:
        self.svc = svc
        self.db = svc.db
        self.db.conn.execute("CREATE TABLE IF NOT EXISTS _subscriptions (id TEXT PRIMARY KEY, "
                             "doc TEXT NOT NULL, rv INTEGER NOT NULL)")
        self.pending: dict[str, list[dict[str, Any]]] = {}
        self.first_change: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    # --- change capture -------------------------------------------------------------------
    def record(self, company: str, set_name: str, key: str, change: str, modified: Any) -> None:
        """Queue a change for every subscription on that company's entity set."""
        if set_name not in SUPPORTED:
            return
        subs = self._all()
        if not subs:
            return
        resource = f"api/v2.0/companies({company})/{set_name}"
        with self.lock:
            for sub in subs:
                if sub["resource"].lstrip("/") != resource:
                    continue
                self.pending.setdefault(sub["subscriptionId"], []).append(
                    {"resource": f"{resource}({key})", "changeType": change,
                     "lastModifiedDateTime": format_datetime(modified)})
                self.first_change.setdefault(sub["subscriptionId"], time.monotonic())
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._run, daemon=True,
                                           name="bcdv-emulator-webhooks")
            self.thread.start()

    def close(self) -> None:
        """Stop the dispatcher."""
        self.stop_event.set()

    def _run(self) -> None:
        while not self.stop_event.wait(0.05):
            delay = float(self.svc.settings.option("bc_webhook_delay_seconds", 30))
            due = []
            with self.lock:
                for sid, since in list(self.first_change.items()):
                    if time.monotonic() - since >= delay:
                        due.append((sid, self.pending.pop(sid, [])))
                        del self.first_change[sid]
            for sid, changes in due:
                self._notify(sid, changes)

    def _notify(self, sid: str, changes: list[dict[str, Any]]) -> None:
        with self.svc.db_lock:
            sub = self._get(sid)
        if sub is None or not changes:
            return
        base = {"subscriptionId": sid, "clientState": sub["clientState"],
                "expirationDateTime": sub["expirationDateTime"]}
        if len(changes) > COLLECTION_THRESHOLD:
            first = min(c["lastModifiedDateTime"] for c in changes)
            items = [{**base, "resource": f"{sub['resource'].lstrip('/')}?$filter="
                                          f"lastModifiedDateTime%20gt%20{first}",
                      "changeType": "collection", "lastModifiedDateTime": first}]
        else:
            items = [{**base, **c} for c in changes]
        try:
            r = requests.post(sub["notificationUrl"], json={"value": items}, timeout=30,
                              verify=self.svc.settings.option("bc_webhook_ca_bundle", True))
            status = r.status_code
        except requests.RequestException:
            status = 503
        if status < 300:
            return
        if status in (408, 429) or status >= 500:
            with self.lock:  # retried on the next round
                self.pending.setdefault(sid, []).extend(changes)
                self.first_change.setdefault(sid, time.monotonic())
            return
        with self.svc.db_lock:
            self.db.conn.execute("DELETE FROM _subscriptions WHERE id=?", (sid,))

    # --- storage --------------------------------------------------------------------------
    def _all(self) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self.db.conn.execute("SELECT doc FROM _subscriptions")]

    def _get(self, sid: str) -> dict[str, Any] | None:
        row = self.db.conn.execute("SELECT doc FROM _subscriptions WHERE id=?", (sid,)).fetchone()
        return json.loads(row[0]) if row else None

    def _save(self, sub: dict[str, Any]) -> None:
        rv = self.db.next_counter("rv")
        sub["@odata.etag"] = f'W/"{rv}"'
        self.db.conn.execute("INSERT INTO _subscriptions(id, doc, rv) VALUES (?, ?, ?) ON "
                             "CONFLICT(id) DO UPDATE SET doc=excluded.doc, rv=excluded.rv",
                             (sub["subscriptionId"], json.dumps(sub), rv))

    # --- HTTP -----------------------------------------------------------------------------
    def handle(self, req: Req, root: str, key: str | None) -> Resp:
        """Serve ``subscriptions`` and ``subscriptions('<id>')``."""
        ctx = f"{root}/$metadata#subscriptions"
        if key is None:
            if req.method == "GET":
                return self._ok(200, {"@odata.context": ctx, "value": self._all()})
            if req.method == "POST":
                return self._create(req, ctx)
            raise BCError(405, "BadRequest_MethodNotAllowed", f"'{req.method}' requests for "
                                                              "'subscriptions' are not allowed.")
        sid = key.strip().strip("'")
        sub = self._get(sid)
        if sub is None:
            raise BCError(404, "BadRequest_ResourceNotFound",
                          "Resource not found for the segment 'subscriptions'.")
        if req.method == "GET":
            return self._ok(200, {"@odata.context": ctx + "/$entity", **sub})
        if req.method == "DELETE":
            self.db.conn.execute("DELETE FROM _subscriptions WHERE id=?", (sid,))
            return Resp(204, b"", [], "subscriptions")
        if req.method == "PATCH":
            match = req.header("if-match")
            if not match:
                raise BCError(400, "BadRequest_InvalidToken", "Could not validate the client "
                                                              "concurrency token required by the "
                                                              "service. Please provide a valid "
                                                              "token in the client request.")
            if match.strip() not in ("*", sub["@odata.etag"]):
                raise BCError(409, "Request_EntityChanged", "Another user has already changed "
                                                            "the record.")
            body = _json(req)
            for k in ("notificationUrl", "clientState"):
                if k in body:
                    sub[k] = body[k]
            self._handshake(sub["notificationUrl"])
            self._stamp(sub)
            self._save(sub)
            return self._ok(200, {"@odata.context": ctx + "/$entity", **sub})
        raise BCError(405, "BadRequest_MethodNotAllowed", f"'{req.method}' requests for "
                                                          "'subscriptions' are not allowed.")

    def _create(self, req: Req, ctx: str) -> Resp:
        body = _json(req)
        extra = set(body) - {"notificationUrl", "resource", "clientState"}
        if extra:
            raise BCError(400, "BadRequest", f"The property '{sorted(extra)[0]}' does not exist "
                                             "on type 'Microsoft.NAV.subscriptions'.")
        url, resource = body.get("notificationUrl"), body.get("resource")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise BCError(400, "Application_DialogException", "The notification URL must be "
                                                              "an absolute URL.")
        if not isinstance(resource, str):
            raise BCError(400, "Application_DialogException", "The resource must be provided.")
        state = body.get("clientState", "")
        if not isinstance(state, str) or len(state) > 2048:
            raise BCError(400, "Application_StringExceededLength",
                          f"The length of the string is {len(str(state))}, but it must be less "
                          "than or equal to 2048 characters.")
        parts = resource.strip("/").split("/")
        ok = (len(parts) == 4 and parts[:2] == ["api", "v2.0"]
              and parts[2].startswith("companies(") and parts[3] in SUPPORTED)
        if not ok:
            raise BCError(400, "BadRequest", f"The resource '{resource}' does not support "
                                             "webhook subscriptions.")
        self._handshake(url)
        now = int(self.svc.now_ms())
        sub = {"subscriptionId": uuid.uuid4().hex, "notificationUrl": url,
               "resource": resource, "timestamp": now, "userId": (req.claims or {}).get(
                   "oid", ""), "clientState": state, "systemCreatedAt": format_datetime(now),
               "systemCreatedBy": (req.claims or {}).get("oid", "")}
        self._stamp(sub)
        self._save(sub)
        return self._ok(201, {"@odata.context": ctx + "/$entity", **sub})

    def _stamp(self, sub: dict[str, Any]) -> None:
        now = int(self.svc.now_ms())
        sub["lastModifiedDateTime"] = format_datetime(now)
        sub["systemModifiedAt"] = format_datetime(now)
        sub["systemModifiedBy"] = sub.get("systemCreatedBy", "")
        sub["expirationDateTime"] = format_datetime(now + LIFETIME_MS)

    def _handshake(self, url: str) -> None:
        token = uuid.uuid4().hex
        try:
            r = requests.post(url, params={"validationToken": token}, timeout=10,
                              verify=self.svc.settings.option("bc_webhook_ca_bundle", True))
            ok = r.status_code == 200 and r.text.strip() == token
        except requests.RequestException:
            ok = False
        if not ok:
            raise BCError(400, "Application_DialogException",
                          "The subscription was not created because the notification URL did "
                          "not return the validation token.")

    @staticmethod
    def _ok(status: int, doc: Any) -> Resp:
        return Resp(status, json.dumps(doc).encode(), [("Content-Type", SUCCESS_CT)],
                    "subscriptions")


def _json(req: Req) -> dict[str, Any]:
    try:
        body = strict_json(req.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise BCError(400, "BadRequest", "Invalid Request Body") from None
    if not isinstance(body, dict):
        raise BCError(400, "BadRequest", "Invalid Request Body")
    return body
