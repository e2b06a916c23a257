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
    assert behaviour["relabeling"] == {"host": "API URL override (optional)",
                                       "login": "Client ID", "password": "Client secret"}
    assert pm.field_behaviours["bcdv_dataverse"]["relabeling"]["host"] == "Organisation URL"


@pytest.mark.parametrize("conn_type", ["bcdv_business_central", "bcdv_dataverse"])
def test_the_form_asks_tenant_and_environment_once(conn_type: str) -> None:
    """Tenant (and BC's environment) have one field each; no standard field asks for them."""
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    prefix = f"extra__{conn_type}__"
    labels = {w.field_name: str(w.field["schema"]["title"])
              for name, w in pm.connection_form_widgets.items() if name.startswith(prefix)}
    behaviour = pm.field_behaviours[conn_type]
    standard = [label for field, label in behaviour["relabeling"].items()
                if field not in behaviour["hidden_fields"]]
    every_label = [*labels.values(), *standard]
    assert sum("tenant" in label.lower() for label in every_label) == 1, every_label
    assert sum("environment" in label.lower() for label in every_label) == (
        1 if conn_type == "bcdv_business_central" else 0), every_label
    assert {"schema", "port"} <= set(behaviour["hidden_fields"])
    assert "authority" in labels and "override" in labels["authority"].lower()
    if conn_type == "bcdv_business_central":
        assert {"tenant_id", "environment", "company_id"} <= set(labels)
        # the API URL names tenant and environment again: it is only an optional override
        assert "override" in behaviour["relabeling"]["host"].lower()


def test_test_connection_against_the_emulators(sync_env) -> None:
    from bcdv.airflow.hooks import BusinessCentralHook, DataverseHook, StateStoreHook

    ok, message = BusinessCentralHook().test_connection()
    assert ok, message
    assert sync_env["endpoints"]["business_central"]["company_id"] in message
    ok, message = DataverseHook().test_connection()
    assert ok and "Connected to Dataverse as " in message, message
    # the application user's own record was read (the demo names it "# bcdv sync")
    assert "as # bcdv sync " in message and "(organisation None)" not in message, message
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


def _conn(**kw):  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    base = {"host": None, "login": "client", "password": "pw-7f3e9a1c", "port": None,
            "schema": None, "extra": "{}"}
    return SimpleNamespace(**{**base, **kw})


def test_business_central_url_and_authority_derive_from_tenant_and_environment() -> None:
    from bcdv.airflow.connections import business_central_settings

    settings = business_central_settings(_conn(extra=json.dumps({
        "tenant_id": "contoso.onmicrosoft.com", "environment": "Sandbox", "company_id": "c1"})))
    assert settings.base_url == ("https://api.businesscentral.dynamics.com/v2.0/"
                                 "contoso.onmicrosoft.com/Sandbox/api/v2.0")
    assert settings.environment == "Sandbox"
    assert settings.identity.authority == "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    default_env = business_central_settings(_conn(extra='{"tenant_id": "t", "company_id": "c"}'))
    assert default_env.base_url.endswith("/v2.0/t/Production/api/v2.0")


def test_business_central_overrides_win_and_old_connections_keep_working() -> None:
    from bcdv.airflow.connections import business_central_settings

    # the pre-form shape: the whole API URL in host, the tenant named in it and in the extra
    old = business_central_settings(_conn(
        host="https://api.businesscentral.dynamics.com/v2.0/t1/Test/api/v2.0/",
        extra='{"tenant_id": "t1", "company_id": "c"}'))
    assert old.base_url == "https://api.businesscentral.dynamics.com/v2.0/t1/Test/api/v2.0"
    assert old.environment == "Test"
    # host alone names tenant and environment: no second place needed
    host_only = business_central_settings(_conn(
        host="https://bc.example.com/v2.0/t2/Prod2/api/v2.0", extra='{"company_id": "c"}'))
    assert host_only.identity.tenant_id == "t2" and host_only.environment == "Prod2"
    assert host_only.identity.authority == "https://login.microsoftonline.com/t2"
    custom = business_central_settings(_conn(extra=json.dumps({
        "tenant_id": "t", "company_id": "c", "authority": "https://login.example.org/t"})))
    assert custom.identity.authority == "https://login.example.org/t"


def test_business_central_without_tenant_or_host_names_what_is_missing() -> None:
    from bcdv.airflow.connections import business_central_settings
    from bcdv.errors import ConfigError

    with pytest.raises(ConfigError, match="tenant_id"):
        business_central_settings(_conn(extra='{"company_id": "c"}'))
    with pytest.raises(ConfigError, match="company_id"):
        business_central_settings(_conn(extra='{"tenant_id": "t"}'))


def test_connection_uri_form_with_the_derived_url(monkeypatch) -> None:
    """An ``AIRFLOW_CONN_*`` URI (no path possible in host) works: the URL is derived."""
    from bcdv.airflow.hooks import BusinessCentralHook

    monkeypatch.setenv("AIRFLOW_CONN_BCDV_BUSINESS_CENTRAL",
                       "bcdv-business-central://client:s3cret@/?tenant_id=t9"
                       "&environment=Production&company_id=c9")
    settings = BusinessCentralHook().get_settings()
    assert settings.base_url == ("https://api.businesscentral.dynamics.com/v2.0/t9/Production/"
                                 "api/v2.0")
    assert settings.company_id == "c9" and settings.identity.client_id == "client"


def test_bcdv_up_enables_the_test_button(tmp_path) -> None:
    from bcdv.commands.up import airflow_env

    endpoints = {"identity": {"tenant_id": "t", "authority": "https://a/t", "client_id": "c",
                              "client_secret": "s"},
                 "business_central": {"base_url": "https://b/v2.0/t/P/api/v2.0", "scope": "x",
                                      "environment": "P", "company_id": "c"},
                 "dataverse": {"base_url": "https://d", "scope": "y", "api_url": "https://d/a"}}
    env = airflow_env(tmp_path, tmp_path / "home", 8099, endpoints, "sqlite:///x.db")
    assert env["AIRFLOW__CORE__TEST_CONNECTION"] == "Enabled"


@pytest.mark.parametrize("conn_type, env", [("bcdv_business_central", "BUSINESS_CENTRAL"),
                                            ("bcdv_dataverse", "DATAVERSE")])
def test_the_test_button_through_airflows_api(sync_env, monkeypatch, conn_type: str,
                                              env: str) -> None:
    """What the form's Test button calls (POST /api/v2/connections/test, with [core]
    test_connection = Enabled as bcdv up and docker-compose set it): Airflow builds the hook
    from the form's values; the emulators answer; a wrong secret fails without echoing it."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    conn = json.loads(os.environ[f"AIRFLOW_CONN_BCDV_{env}"])
    body = {"connection_id": "bcdv_form_under_test", "conn_type": conn_type,
            "host": conn["host"], "login": conn["login"], "password": conn["password"],
            "extra": json.dumps(conn["extra"])}
    client = TestClient(create_app(apps="core"))
    good = client.post("/api/v2/connections/test", json=body)
    assert good.status_code == 200, good.text
    assert good.json()["status"] is True, good.json()
    wrong = client.post("/api/v2/connections/test",
                        json={**body, "password": "wrong-secret-4b3a2c1d"})
    assert wrong.status_code == 200 and wrong.json()["status"] is False
    assert "wrong-secret-4b3a2c1d" not in wrong.text
    assert "invalid_client" in wrong.text or "AADSTS" in wrong.text, wrong.text
