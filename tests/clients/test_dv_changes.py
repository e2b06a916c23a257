"""Dataverse change tracking through the client: paged initial read and paged delta reads.

https://learn.microsoft.com/power-apps/developer/data-platform/use-change-tracking-synchronize-data-external-systems
"""
from __future__ import annotations

import uuid

from bcdv.clients import DataverseClient


def test_changes_follow_next_links_to_the_delta_link(dv: DataverseClient) -> None:
    everyone = {r["contactid"] for r in dv.list("contacts", select=["contactid"])}
    before = dv.http.request_count
    full = dv.changes("contacts", select=["lastname"], page_size=3)
    assert dv.http.request_count - before == -(-len(everyone) // 3)  # one GET per page
    assert {r["contactid"] for r in full.rows} == everyone and full.deleted == []
    assert "$deltatoken=" in full.delta_link

    tag = f"t{uuid.uuid4().hex[:8]}"
    made = [dv.create("contacts", {"lastname": f"{tag}-{n}"}, select=["contactid"])["contactid"]
            for n in range(5)]
    gone = made.pop()
    dv.delete("contacts", gone)
    before = dv.http.request_count
    delta = dv.changes("contacts", delta_link=full.delta_link, page_size=2)
    assert dv.http.request_count - before == 3  # 4 changed rows + 1 deletion, pages of 2
    assert [r["contactid"] for r in delta.rows] == made
    assert [r["lastname"] for r in delta.rows] == [f"{tag}-{n}" for n in range(4)]
    assert delta.deleted == [gone]
    assert delta.delta_link != full.delta_link
    again = dv.changes("contacts", delta_link=delta.delta_link, page_size=2)
    assert again.rows == [] and again.deleted == []
