"""How an application tests its own tasks with pgsched.testing: only the plugin's fixtures are used here.

``pgsched_settings`` is a fresh migrated database per test (pytest plugin ``pgsched.testing.plugin``);
``drain`` runs the due jobs through a real worker; ``eager`` runs tasks inline without a database.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pgsched import Pgsched, Settings
from pgsched.testing import drain, eager
from tests.examples.shop import app as shop_app
from tests.examples.shop import charge_card, place_order


@pytest.fixture
def shop(pgsched_settings: Settings) -> Iterator[Pgsched]:
    app = shop_app.with_settings(pgsched_settings)
    yield app
    app.close()


def test_an_order_and_the_receipt_it_enqueues_both_run_in_one_drain(shop: Pgsched) -> None:
    order = place_order.enqueue(order_id=7, items=["tea", "cake"])
    outcomes = drain(shop)
    assert [(o.task, o.state) for o in outcomes] == [("place_order", "succeeded"), ("send_receipt", "succeeded")]
    assert outcomes[0].id == order and outcomes[0].result == {"order": 7, "count": 2}
    assert outcomes[1].result == f"receipt 7 (job {outcomes[1].id})"
    assert drain(shop) == []  # nothing is due any more


def test_a_failed_charge_is_reported_with_its_error_and_waits_for_its_retry(shop: Pgsched) -> None:
    job_id = charge_card.enqueue(cents=0)
    (outcome,) = drain(shop)
    assert (outcome.id, outcome.state, outcome.attempt) == (job_id, "queued", 1)
    assert outcome.error == "ValueError: cannot charge 0 cents"


def test_eager_mode_runs_the_order_and_its_receipt_inline_without_a_database() -> None:
    with eager(shop_app) as run:
        assert place_order.enqueue(order_id=1, items=["tea"]) == 1
    # outcomes are listed as jobs end: the receipt, run inside the order, ends first
    assert [(o.id, o.task, o.state) for o in run.outcomes] == [
        (2, "send_receipt", "succeeded"),
        (1, "place_order", "succeeded"),
    ]
    assert run.outcomes[0].result == "receipt 1 (job 2)"
