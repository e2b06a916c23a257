"""Request bodies that are not JSON: a 400 in the service's error shape, never a 5xx, and
nothing created.

Three ways a body fails to be JSON: a lone UTF-16 surrogate escape in a string (``"\\ud800"``:
RFC 8259 strings must be Unicode, and neither service can store it), a truncated document, and
a byte that is not UTF-8 (JSON text is UTF-8, RFC 8259 section 8.1).
"""
from __future__ import annotations

import pytest
import requests

from .wire import Api, error_of

BODIES = {
    "lone_surrogate": '{{"{field}": "{name} \\ud800"}}',
    "truncated": '{{"{field}": "{name}',
    "not_utf8": '{{"{field}": "{name} \udcff"}}',
}


def _body(kind: str, field: str, name: str) -> bytes:
    # surrogateescape turns the \udcff placeholder into the raw byte 0xff.
    return BODIES[kind].format(field=field, name=name).encode("utf-8", "surrogateescape")


def _assert_error_400(r: requests.Response) -> dict[str, str]:
    assert r.status_code == 400, (r.status_code, r.text[:300])
    err = error_of(r)
    assert isinstance(err.get("code"), str) and err.get("message"), err
    return err


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_bc_body_that_is_not_json_is_bad_request(company: Api, name: str, kind: str) -> None:
    """A customer POST whose body is not JSON is 400 BadRequest ("Invalid Request Body") and
    creates nothing.
    https://learn.microsoft.com/dynamics365/business-central/dev-itpro/webservices/dynamics-error-codes"""
    r = company.post("customers", data=_body(kind, "displayName", name),
                     headers={"Content-Type": "application/json"})
    assert _assert_error_400(r)["code"] == "BadRequest"
    found = company.get("customers", params={"$filter": f"startswith(displayName,'{name}')"})
    assert found.status_code == 200 and found.json()["value"] == []


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_dv_body_that_is_not_json_is_bad_request(dv: Api, name: str, kind: str) -> None:
    """An account POST whose body is not JSON is 400 with Dataverse's error object and creates
    nothing.
    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors"""
    r = dv.post("accounts", data=_body(kind, "name", name),
                headers={"Content-Type": "application/json"})
    _assert_error_400(r)
    found = dv.get("accounts", params={"$select": "name",
                                       "$filter": f"startswith(name,'{name}')"})
    assert found.status_code == 200 and found.json()["value"] == []
