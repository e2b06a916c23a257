"""Microsoft's Dataverse Python SDK (PowerPlatform-Dataverse-Client) against the emulator.

Only the base URL, the credential and the CA bundle differ from a real tenant: the SDK's
requests calls pick the CA up from REQUESTS_CA_BUNDLE, the standard requests setting.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

import msal
import pytest

from bcdv_emulators.testing import run_emulators

from .test_identity import VerifyingSession

dataverse = pytest.importorskip("PowerPlatform.Dataverse.client")


class EmulatorCredential:
    """An azure-core TokenCredential backed by msal against the emulated authority."""

    def __init__(self, ep: dict[str, Any]) -> None:
        ident = ep["identity"]
        self.app = msal.ConfidentialClientApplication(
            ident["client_id"], client_credential=ident["client_secret"],
            authority=ident["authority"], instance_discovery=False, validate_authority=False,
            azure_region=False, http_client=VerifyingSession(ep["ca_bundle"]))

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        """azure.core.credentials.TokenCredential protocol."""
        from azure.core.credentials import AccessToken
        result = self.app.acquire_token_for_client(list(scopes))
        assert "access_token" in result, result
        return AccessToken(result["access_token"], int(time.time()) + int(result["expires_in"]))


@pytest.fixture(scope="module")
def sdk_ep(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with run_emulators(tmp_path_factory.mktemp("sdk"), seed="demo",
                       dv_alternate_keys={"accounts": [["accountnumber"]]}) as ep:
        yield ep


def test_dataverse_sdk_crud_paging_upsert(sdk_ep: dict[str, Any],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sdk_ep["ca_bundle"])
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    client = dataverse.DataverseClient(sdk_ep["dataverse"]["base_url"],
                                       EmulatorCredential(sdk_ep))
    acc_id = client.records.create("account", {"name": "SDK Co", "telephone1": "555 1000"})
    assert uuid.UUID(acc_id)
    got = client.records.get("account", acc_id, select=["name", "telephone1"])
    assert got["name"] == "SDK Co"
    ids = client.records.create("account", [{"name": f"SDK Bulk {i}", "address1_city": "SDKville"}
                                            for i in range(12)])
    assert len(ids) == 12
    pages = list(client.records.list_pages("account", filter="address1_city eq 'SDKville'",
                                           select=["name"], page_size=5))
    assert [len(p) for p in pages] == [5, 5, 2]
    client.records.update("account", acc_id, {"telephone1": "555 2000"})
    assert client.records.get("account", acc_id, select=["telephone1"])["telephone1"] == \
        "555 2000"
    from PowerPlatform.Dataverse.models.upsert import UpsertItem
    client.records.upsert("account", [UpsertItem(alternate_key={"accountnumber": "SDK-1"},
                                                 record={"name": "SDK Upserted"})])
    found = client.records.list("account", filter="accountnumber eq 'SDK-1'", select=["name"])
    assert [r["name"] for r in found] == ["SDK Upserted"]
    client.records.delete("account", acc_id)
    assert client.records.list("account", filter=f"accountid eq {acc_id}").__len__() == 0
