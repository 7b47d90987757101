"""Keyset pagination over 10,000 jobs: every job exactly once, newest first, with an opaque cursor."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.support.factories import insert_jobs


def test_paging_through_ten_thousand_jobs_returns_each_exactly_once_newest_first(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    ids = insert_jobs(conn, 10_000, task="bulk")
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/jobs", params=params).json()
        seen.extend(j["id"] for j in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 10
    assert seen == sorted(ids, reverse=True)


def test_default_page_size_and_maximum_are_enforced(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    insert_jobs(conn, 120)
    page = client.get("/jobs").json()
    assert len(page["items"]) == 50 and page["next_cursor"]
    assert client.get("/jobs", params={"limit": 1001}).status_code == 400
    assert len(client.get("/jobs", params={"limit": 1000}).json()["items"]) == 120


def test_cursor_pages_keep_their_filter_and_the_last_page_has_no_cursor(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    insert_jobs(conn, 7, queue="a")
    insert_jobs(conn, 5, queue="b")
    first = client.get("/jobs", params={"queue": "a", "limit": 4}).json()
    second = client.get("/jobs", params={"queue": "a", "limit": 4, "cursor": first["next_cursor"]}).json()
    assert len(first["items"]) == 4 and len(second["items"]) == 3 and second["next_cursor"] is None
    assert {j["queue"] for j in first["items"] + second["items"]} == {"a"}
    exact = client.get("/jobs", params={"queue": "b", "limit": 5}).json()
    assert len(exact["items"]) == 5 and exact["next_cursor"] is None
