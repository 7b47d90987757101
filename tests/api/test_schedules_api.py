"""Schedule endpoints over the real ScheduleStore."""

from __future__ import annotations

import httpx


def test_schedules_can_be_created_listed_changed_triggered_and_deleted(client: httpx.Client) -> None:
    body = {
        "name": "nightly",
        "cron": "0 3 * * *",
        "task": "backup",
        "timezone": "Europe/Paris",
        "args": {"full": True},
    }
    created = client.post("/schedules", json=body)
    assert created.status_code == 201
    assert created.json()["timezone"] == "Europe/Paris" and created.json()["next_fire_at"] is not None
    assert client.post("/schedules", json=body).status_code == 200  # replaced, not duplicated
    assert [s["name"] for s in client.get("/schedules").json()["items"]] == ["nightly"]

    paused = client.patch("/schedules/nightly", json={"enabled": False, "cron": "*/10 * * * * *"})
    assert paused.status_code == 200
    assert paused.json()["enabled"] is False and paused.json()["cron"] == "*/10 * * * * *"
    assert paused.json()["args"] == {"full": True}
    assert client.patch("/schedules/nightly", json={"name": "other"}).status_code == 422
    assert client.patch("/schedules/nightly", json={"timezone": "Nowhere/Land"}).json()["error"]["field"] == "timezone"

    job = client.post("/schedules/nightly/trigger")
    assert job.status_code == 201 and job.json()["task"] == "backup" and job.json()["schedule_name"] == "nightly"
    runs = client.get("/schedules/nightly/runs").json()
    assert [j["id"] for j in runs["items"]] == [job.json()["id"]]

    assert client.delete("/schedules/nightly").status_code == 204
    assert client.get("/schedules/nightly").status_code == 404
    assert client.delete("/schedules/nightly").status_code == 404
    assert client.post("/schedules/nightly/trigger").status_code == 404


def test_schedule_list_pages_by_name(client: httpx.Client) -> None:
    for i in range(5):
        client.post("/schedules", json={"name": f"s{i}", "cron": "* * * * *", "task": "t"})
    first = client.get("/schedules", params={"limit": 3}).json()
    second = client.get("/schedules", params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert [s["name"] for s in first["items"] + second["items"]] == ["s0", "s1", "s2", "s3", "s4"]
    assert second["next_cursor"] is None
    assert client.get("/schedules", params={"cursor": "not a name!"}).status_code == 400  # cursors are names


def test_preview_lists_the_next_fire_instants_in_the_zone(client: httpx.Client) -> None:
    r = client.post("/schedules/preview", json={"cron": "0 9 * * *", "timezone": "America/New_York", "count": 3})
    assert r.status_code == 200
    fires = r.json()["fires"]
    assert len(fires) == 3 and all(f.endswith("+00:00") for f in fires)
    assert client.post("/schedules/preview", json={"cron": "0 9 * * *", "count": 1000}).status_code == 422
