"""No client secret and no bearer token in any log record, at any level (DEBUG included)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest


def _tokens_seen(client: Any) -> list[str]:
    token = client.http._token()
    assert token and len(token) > 20
    return [token]


def test_no_secret_or_token_in_debug_logs_of_a_token_request_and_an_api_call(
        tmp_path: Path, debug_everything: list[str], capfd: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow.sdk.log

    from bcdv.airflow import connections as conns
    from bcdv.clients.auth import reset_token_cache
    from bcdv.clients.business_central import BusinessCentralClient
    from bcdv.clients.dataverse import DataverseClient
    from bcdv_emulators.testing import run_emulators

    masked: list[Any] = []

    def mask_secret(secret: Any, name: str | None = None) -> None:
        # What `airflow dags test` does with a masking call: its in-process comms log the
        # message, value included, at DEBUG.
        masked.append(secret)
        logging.getLogger("airflow.sdk.execution_time").debug(
            "Sending request msg=MaskSecret(value=%r, name=%r)", secret, name)

    monkeypatch.setattr(airflow.sdk.log, "mask_secret", mask_secret)
    with run_emulators(tmp_path / "emulators", seed="demo") as ep:
        reset_token_cache()
        secret = ep["identity"]["client_secret"]
        env = conns.connection_env(ep)
        conn = json.loads(env["AIRFLOW_CONN_BCDV_BUSINESS_CENTRAL"])
        # The Airflow path: connection -> settings (masks the secret) -> client.
        settings = conns.business_central_settings(SimpleNamespace(
            host=conn["host"], login=conn["login"], password=conn["password"],
            extra=json.dumps(conn["extra"])))
        bc = BusinessCentralClient(settings)
        dv_conn = json.loads(env["AIRFLOW_CONN_BCDV_DATAVERSE"])
        dv = DataverseClient(conns.dataverse_settings(SimpleNamespace(
            host=dv_conn["host"], login=dv_conn["login"], password=dv_conn["password"],
            extra=json.dumps(dv_conn["extra"]))))
        try:
            assert bc.list("customers", select=["id"], page_size=5)
            assert dv.whoami().get("UserId")
            logging.getLogger("bcdv.test").debug("secret %s and Authorization: Bearer %s",
                                                 secret, bc.http._token())
            tokens = _tokens_seen(bc) + _tokens_seen(dv)
        finally:
            bc.close()
            dv.close()
        reset_token_cache()
    captured = capfd.readouterr()
    text = "\n".join(debug_everything) + captured.out + captured.err
    assert "urllib3" in text and "msal" in text  # the debug logs did run
    assert secret not in text
    for token in tokens:
        assert token not in text and token[:40] not in text


def test_redaction_masks_secret_pairs_bearer_headers_and_jwts() -> None:
    from bcdv.clients.redact import redact, register_secret

    register_secret("Sup3r~Secret/Value")
    text = redact("body client_secret=abc%2Fdef&grant_type=client_credentials; "
                  "{'Authorization': 'Bearer abc.def-ghi'} eyJhbGciOi.eyJzdWIiOi.c2ln "
                  "secret Sup3r~Secret/Value and Sup3r%7ESecret%2FValue")
    assert "abc%2Fdef" not in text and "abc.def-ghi" not in text and "eyJ" not in text
    assert "Sup3r" not in text and "grant_type=client_credentials" in text
