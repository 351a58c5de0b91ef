"""What an admin_operator reads on the saga pages: newest first, the step that failed and its try,
one numbering of attempts everywhere, plain sentences with seconds, links to the order and
customer, and every action behind a page that asks."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from common.outbox.models import OutboxMessage
from common.testing import OPERATOR
from orchestrator.sagas.models import Saga
from orchestrator.sagas.services import checkout_start, saga_operator_action, saga_sweep
from orchestrator.sagas.tests.test_services import ITEMS, answer, outstanding

pytestmark = pytest.mark.django_db(transaction=True)
LIST = "/orchestrator/admin/sagas/saga/"


def rejected_for_want_of_funds() -> Saga:
    saga = checkout_start(actor=OPERATOR, customer_id=uuid.uuid4(), items=ITEMS)
    answer(outstanding(saga), total=700)  # order created
    answer(outstanding(saga))  # customer verified
    answer(outstanding(saga), ok=False, reason="insufficient_funds")  # the debit refused
    answer(outstanding(saga))  # the order rejected
    saga.refresh_from_db()
    assert saga.state == "rejected"
    return saga


def test_the_list_is_newest_first(admin_operator: Client) -> None:
    first = checkout_start(actor=OPERATOR, customer_id=uuid.uuid4(), items=ITEMS)
    second = checkout_start(actor=OPERATOR, customer_id=uuid.uuid4(), items=ITEMS)

    page = admin_operator.get(LIST).content.decode()

    assert page.index(str(second.id)[:8]) < page.index(str(first.id)[:8])


def test_a_rejected_row_shows_the_step_that_failed_and_its_attempt(admin_operator: Client) -> None:
    rejected_for_want_of_funds()

    page = admin_operator.get(LIST).content.decode()

    assert '<td class="field-step">debit</td>' in page
    assert '<td class="field-attempt_shown">1</td>' in page


def test_attempts_agree_and_do_not_count_the_compensation(admin_operator: Client) -> None:
    saga = checkout_start(actor=OPERATOR, customer_id=uuid.uuid4(), items=ITEMS)
    answer(outstanding(saga), total=700)
    answer(outstanding(saga), ok=False, reason="customer_blocked")  # the order is rejected
    Saga.objects.filter(pk=saga.pk).update(deadline="2000-01-01T00:00:00Z")
    saga_sweep()  # the order.reject gets no answer: sent again
    saga.refresh_from_db()

    page = admin_operator.get(f"{LIST}{saga.pk}/change/").content.decode()

    assert saga.steps[0]["attempts"] == 1  # one order.create_pending, two order.reject
    assert "sent order.create_pending, attempt 1" in page
    assert "undoing: sent order.reject, attempt 2" in page
    listed = admin_operator.get(LIST).content.decode()
    assert '<td class="field-step">↩ create_order</td>' in listed
    assert '<td class="field-attempt_shown">2</td>' in listed


def test_the_history_reads_as_sentences_with_seconds_and_links(admin_operator: Client) -> None:
    saga = rejected_for_want_of_funds()

    page = admin_operator.get(f"{LIST}{saga.pk}/change/").content.decode()

    assert "ok=True" not in page and "reason=None" not in page
    assert "refused to attempt 1: insufficient_funds" in page
    assert "saga rejected: insufficient_funds" in page
    created = saga.created_at.strftime("%Y-%m-%d %H:%M:%S")
    assert created in page
    assert f'href="/order/admin/orders/order/{saga.order_id}/change/"' in page
    assert f'href="/customer/admin/customers/customer/{saga.customer_id}/change/"' in page


def test_an_action_from_a_sagas_page_asks_first(admin_operator: Client) -> None:
    saga = checkout_start(actor=OPERATOR, customer_id=uuid.uuid4(), items=ITEMS)
    confirm = f"{LIST}{saga.pk}/act/retry/"

    page = admin_operator.get(f"{LIST}{saga.pk}/change/").content.decode()
    assert f'href="{confirm}"' in page

    asked = admin_operator.get(confirm)
    assert asked.status_code == 200 and b"order.create_pending" in asked.content
    assert OutboxMessage.objects.filter(type="order.create_pending").count() == 1

    done = admin_operator.post(confirm, {"confirmed": "yes"})
    assert done.status_code == 302 and done["Location"] == f"{LIST}{saga.pk}/change/"
    assert OutboxMessage.objects.filter(type="order.create_pending").count() == 2


def test_a_list_action_asks_first_and_says_why_it_is_not_offered(admin_operator: Client) -> None:
    ended = rejected_for_want_of_funds()
    running = checkout_start(actor=OPERATOR, customer_id=uuid.uuid4(), items=ITEMS)
    chosen = {"action": "retry", "_selected_action": [ended.pk, running.pk]}

    asked = admin_operator.post(LIST, chosen).content.decode()
    assert "not offered</b>: the saga has ended" in asked
    assert "Yes, retry 1 saga" in asked

    done = admin_operator.post(LIST, {**chosen, "confirmed": "yes"}, follow=True).content.decode()
    assert "Retry: 1 saga(s)." in done
    assert f"{ended.id}: retry not offered: the saga has ended" in done.lower()  # capfirst


def test_an_ended_saga_offers_no_action(admin_operator: Client) -> None:
    saga = rejected_for_want_of_funds()

    page = admin_operator.get(f"{LIST}{saga.pk}/change/").content.decode()

    assert "/act/" not in page
    with pytest.raises(Exception, match="ended"):
        saga_operator_action(saga_id=saga.pk, action="retry", operator="op")
