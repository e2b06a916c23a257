"""Only https service URLs are accepted: a bearer token never travels in clear text."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bcdv.errors import ConfigError
from bcdv.settings import (
    BusinessCentralSettings,
    DataverseSettings,
    IdentitySettings,
    endpoints_from_dict,
    endpoints_from_env,
    load_endpoints,
)

GUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def _endpoints(**over: str) -> dict[str, Any]:
    data = {"identity": {"authority": f"https://127.0.0.1:8443/{GUID}", "tenant_id": GUID,
                         "client_id": GUID, "client_secret": "s3cret"},
            "business_central": {"base_url": "https://127.0.0.1:8444/v2.0/x/Production/api/v2.0",
                                 "company_id": GUID},
            "dataverse": {"base_url": "https://127.0.0.1:8445"}}
    for path, value in over.items():
        section, key = path.split("__")
        data[section][key] = value
    return data


@pytest.mark.parametrize("setting,url", [
    ("identity__authority", f"http://127.0.0.1:8443/{GUID}"),
    ("business_central__base_url", "http://127.0.0.1:8444/v2.0/x/Production/api/v2.0"),
    ("dataverse__base_url", "http://localhost:8445"),
    ("dataverse__api_url", "http://org.crm.dynamics.com/api/data/v9.2"),
    ("dataverse__base_url", "HTTP://org.crm.dynamics.com"),
    ("dataverse__base_url", "org.crm.dynamics.com"),
])
def test_an_http_url_in_the_endpoints_file_is_refused_naming_the_setting(
        tmp_path: Path, setting: str, url: str) -> None:
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps(_endpoints(**{setting: url})))
    with pytest.raises(ConfigError, match=r"https") as err:
        load_endpoints(path)
    assert setting.replace("__", ".") in str(err.value) and str(path) in str(err.value)


def test_an_http_url_in_the_environment_is_refused_naming_the_variable() -> None:
    env = {"BCDV_TENANT_ID": GUID, "BCDV_CLIENT_ID": GUID, "BCDV_CLIENT_SECRET": "s3cret",
           "BCDV_BC_BASE_URL": "http://api.businesscentral.dynamics.com/v2.0/t/P/api/v2.0",
           "BCDV_BC_COMPANY_ID": GUID, "BCDV_DATAVERSE_URL": "https://org.crm.dynamics.com"}
    with pytest.raises(ConfigError, match=r"BCDV_BC_BASE_URL.*https"):
        endpoints_from_env(env)
    env["BCDV_BC_BASE_URL"] = env["BCDV_BC_BASE_URL"].replace("http:", "https:")
    env["BCDV_AUTHORITY"] = f"http://login.microsoftonline.com/{GUID}"
    with pytest.raises(ConfigError, match=r"BCDV_AUTHORITY.*https"):
        endpoints_from_env(env)


def test_settings_objects_refuse_http_urls() -> None:
    ident = IdentitySettings(f"https://login.microsoftonline.com/{GUID}", GUID, GUID, "s")
    with pytest.raises(ConfigError, match="https"):
        IdentitySettings(f"http://login.microsoftonline.com/{GUID}", GUID, GUID, "s")
    with pytest.raises(ConfigError, match="https"):
        BusinessCentralSettings("http://x/api/v2.0", GUID, ident)
    with pytest.raises(ConfigError, match="https"):
        DataverseSettings("http://org.crm.dynamics.com", ident)
    assert endpoints_from_dict(_endpoints()).dataverse.api_url.startswith("https://")


def test_an_http_airflow_connection_is_refused_naming_the_connection() -> None:
    from bcdv.airflow import connections as conns

    extra = {"tenant_id": GUID, "company_id": GUID, "authority": f"https://login/{GUID}"}
    bc = SimpleNamespace(host="http://api.businesscentral.dynamics.com/v2.0/t/P/api/v2.0",
                         login=GUID, password="s3cret", extra=json.dumps(extra))
    with pytest.raises(ConfigError, match=r"bcdv_business_central.*host.*https"):
        conns.business_central_settings(bc)
    dv = SimpleNamespace(host="https://org.crm.dynamics.com", login=GUID, password="s3cret",
                         extra=json.dumps({**extra, "authority": f"http://login/{GUID}"}))
    with pytest.raises(ConfigError, match=r"bcdv_dataverse.*authority.*https"):
        conns.dataverse_settings(dv)
