"""The connection types: registered with Airflow, "Test connection" really connects, and no
secret reaches a message."""

from __future__ import annotations

import json
import os

import pytest


def test_provider_registers_the_three_connection_types() -> None:
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "bcdv" in pm.providers
    hooks = pm.hooks
    for conn_type, cls in (("bcdv_business_central", "BusinessCentralHook"),
                           ("bcdv_dataverse", "DataverseHook"),
                           ("bcdv_state", "StateStoreHook")):
        info = hooks[conn_type]
        assert info is not None and info.hook_class_name == f"bcdv.airflow.hooks.{cls}"
        assert info.connection_testable
    widgets = pm.connection_form_widgets
    assert "extra__bcdv_business_central__company_id" in widgets
    assert "extra__bcdv_dataverse__tenant_id" in widgets
    behaviour = pm.field_behaviours["bcdv_business_central"]
    assert behaviour["relabeling"] == {"host": "Base URL", "login": "Client ID",
                                       "password": "Client secret"}


def test_test_connection_against_the_emulators(sync_env) -> None:
    from bcdv.airflow.hooks import BusinessCentralHook, DataverseHook, StateStoreHook

    ok, message = BusinessCentralHook().test_connection()
    assert ok, message
    assert sync_env["endpoints"]["business_central"]["company_id"] in message
    ok, message = DataverseHook().test_connection()
    assert ok and "Connected to Dataverse" in message, message
    os.environ.pop("BCDV_STATE_URL")
    url = sync_env["state_url"]
    os.environ["AIRFLOW_CONN_BCDV_STATE"] = json.dumps({"conn_type": "bcdv_state",
                                                        "extra": {"url": url}})
    try:
        ok, message = StateStoreHook().test_connection()
        assert ok, message
    finally:
        os.environ.pop("AIRFLOW_CONN_BCDV_STATE")


@pytest.mark.parametrize("hook_name, env", [("BusinessCentralHook", "BUSINESS_CENTRAL"),
                                            ("DataverseHook", "DATAVERSE")])
def test_failed_test_connection_names_the_problem_but_not_the_secret(
        sync_env, monkeypatch, hook_name: str, env: str) -> None:
    from bcdv.airflow import hooks

    var = f"AIRFLOW_CONN_BCDV_{env}"
    conn = json.loads(os.environ[var])
    conn["password"] = "not-the-secret-9f8e7d"
    monkeypatch.setenv(var, json.dumps(conn))
    ok, message = getattr(hooks, hook_name)().test_connection()
    assert not ok
    assert "not-the-secret-9f8e7d" not in message
    assert "invalid_client" in message or "AADSTS" in message, message


def test_state_store_test_connection_fails_cleanly(monkeypatch) -> None:
    from bcdv.airflow.hooks import StateStoreHook

    monkeypatch.setenv("AIRFLOW_CONN_BCDV_STATE", json.dumps({
        "conn_type": "bcdv_state", "host": "127.0.0.1", "port": 1, "login": "u",
        "password": "pw-secret-123", "schema": "bcdv"}))
    ok, message = StateStoreHook().test_connection()
    assert not ok and "pw-secret-123" not in message


def test_hooks_register_the_secret_with_the_masker(sync_env) -> None:
    from airflow.sdk._shared.secrets_masker import redact

    from bcdv.airflow.hooks import DataverseHook

    secret = sync_env["endpoints"]["identity"]["client_secret"]
    DataverseHook().get_settings()
    assert secret not in str(redact(f"token request with {secret}"))


def test_state_url_forms() -> None:
    from types import SimpleNamespace

    from bcdv.airflow.connections import state_url_of

    def conn(**kw):  # type: ignore[no-untyped-def]
        base = {"host": None, "login": None, "password": None, "port": None, "schema": None,
                "extra": "{}"}
        return SimpleNamespace(**{**base, **kw})

    assert state_url_of(conn(host="db", login="u", password="p w", port=5432, schema="bcdv")) \
        == "postgresql+psycopg2://u:p%20w@db:5432/bcdv"
    assert state_url_of(conn(host="postgres://u@db/bcdv")) == "postgresql+psycopg2://u@db/bcdv"
    assert state_url_of(conn(extra='{"url": "sqlite:////tmp/s.db"}')) == "sqlite:////tmp/s.db"
