"""D.15: Business Central webhook subscriptions (handshake, notifications, lifetime)."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from bcdv_emulators.testing import run_emulators

from .conftest import Api, get_token


class Subscriber(BaseHTTPRequestHandler):
    """Echoes validation tokens and records notification bodies."""

    # Shared by every handler instance (one per request); the test resets it.
    received: ClassVar[list[dict[str, Any]]] = []
    echo = True

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        query = parse_qs(urlsplit(self.path).query)
        if "validationToken" in query:  # BC's handshake: a POST with the token in the query
            body = (query["validationToken"][0] if self.echo else "wrong").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        Subscriber.received.append(json.loads(raw))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture()
def subscriber() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Subscriber)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Subscriber.received = []
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_d15_bc_webhooks(tmp_path: Path, subscriber: str) -> None:
    with run_emulators(tmp_path, seed="demo", bc_webhook_delay_seconds=0.2) as ep:
        bc = Api(ep["business_central"]["base_url"],
                 get_token(ep, ep["business_central"]["scope"]), ep["ca_bundle"])
        cid = ep["business_central"]["company_id"]
        resource = f"/api/v2.0/companies({cid})/customers"
        r = bc.post("subscriptions", json={"notificationUrl": subscriber, "resource": resource,
                                           "clientState": "s3cret"})
        assert r.status_code == 201, r.text
        sub = r.json()
        expires = datetime.fromisoformat(sub["expirationDateTime"].replace("Z", "+00:00"))
        assert abs(expires - datetime.now(timezone.utc) - timedelta(days=3)) < \
            timedelta(minutes=1)
        bad = bc.post("subscriptions", json={"notificationUrl": subscriber,
                                             "resource": f"/api/v2.0/companies({cid})/contacts"})
        assert bad.status_code == 400
        c = bc.post(f"companies({cid})/customers", json={"displayName": "Hooked"}).json()
        bc.patch(f"companies({cid})/customers({c['id']})", json={"city": "X"},
                 headers={"If-Match": "*"})
        bc.delete(f"companies({cid})/customers({c['id']})")
        deadline = time.monotonic() + 10
        while not Subscriber.received and time.monotonic() < deadline:
            time.sleep(0.05)
        items = [i for body in Subscriber.received for i in body["value"]]
        assert [i["changeType"] for i in items] == ["created", "updated", "deleted"]
        assert items[0]["subscriptionId"] == sub["subscriptionId"]
        assert items[0]["clientState"] == "s3cret"
        assert items[0]["resource"] == f"api/v2.0/companies({cid})/customers({c['id']})"
        r = bc.patch(f"subscriptions('{sub['subscriptionId']}')", json={"clientState": "new"})
        assert r.status_code == 400
        r = bc.patch(f"subscriptions('{sub['subscriptionId']}')", json={"clientState": "new"},
                     headers={"If-Match": sub["@odata.etag"]})
        assert r.status_code == 200 and r.json()["clientState"] == "new"
        Subscriber.echo = False
        try:
            r = bc.post("subscriptions", json={"notificationUrl": subscriber,
                                               "resource": resource})
            assert r.status_code == 400
        finally:
            Subscriber.echo = True
        assert bc.delete(f"subscriptions('{sub['subscriptionId']}')").status_code == 204
        assert bc.get("subscriptions").json()["value"] == []
