"""Paged reads (issue 14): ``pages_from(prefetch=True)``, used by the engine's readers, asks
for the next page while the caller works on the one before; without it a caller that stops
after one page reads one page only (the UI's name search). Against the Dataverse emulator's
server-driven paging (``Prefer: odata.maxpagesize``, ``@odata.nextLink`` followed verbatim;
Learn: query-data-web-api, "Page results")."""
from __future__ import annotations

import time
from typing import Any

import pytest

from bcdv.clients import DataverseClient
from bcdv.errors import FatalApiError

from .test_dv_batch import _tag


def _accounts(dv: DataverseClient, count: int) -> str:
    tag = _tag()
    dv.create_multiple("accounts", "account", [{"name": f"{tag}-{i}"} for i in range(count)])
    return tag


def _requests_reach(dv: DataverseClient, before: int, count: int) -> int:
    """The requests sent since ``before`` once they reach ``count`` (or after 10 s)."""
    deadline = time.monotonic() + 10
    while dv.http.request_count - before < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return dv.http.request_count - before


def test_prefetch_asks_for_the_next_page_while_the_caller_holds_one(
        dv: DataverseClient) -> None:
    tag = _accounts(dv, 5)
    before = dv.http.request_count
    pages = dv.iter_pages("accounts", filter=f"startswith(name,'{tag}')", select=["name"],
                          page_size=2, prefetch=True)
    first = next(pages)
    # The caller has not asked for the second page yet: it is on its way all the same.
    assert len(first) == 2 and _requests_reach(dv, before, 2) == 2
    rest = [row for page in pages for row in page]
    assert sorted(r["name"] for r in [*first, *rest]) == [f"{tag}-{i}" for i in range(5)]
    assert dv.http.request_count - before == 3  # three pages, none read twice


def test_without_prefetch_a_caller_that_stops_reads_one_page(dv: DataverseClient) -> None:
    tag = _accounts(dv, 5)
    before = dv.http.request_count
    pages = dv.iter_pages("accounts", filter=f"startswith(name,'{tag}')", select=["name"],
                          page_size=2)
    assert len(next(pages)) == 2
    time.sleep(0.3)
    assert dv.http.request_count - before == 1
    pages.close()


@pytest.mark.parametrize("prefetch", [False, True])
def test_a_paging_loop_is_refused_after_the_pages_before_it(
        dv: DataverseClient, monkeypatch: pytest.MonkeyPatch, prefetch: bool) -> None:
    # A service that hands back a nextLink it already gave: both ways hand over the same
    # pages, then refuse.
    def page(link: str, headers: Any) -> dict[str, Any]:
        return {"value": [{"n": 2}], "@odata.nextLink": "https://x/next"}

    monkeypatch.setattr(dv.http, "_page", page)
    got = []
    with pytest.raises(FatalApiError, match="same nextLink twice"):
        for rows in dv.http.pages_from({"value": [{"n": 1}], "@odata.nextLink":
                                        "https://x/next"}, prefetch=prefetch):
            got.append(rows)
    assert got == [[{"n": 1}], [{"n": 2}]]
