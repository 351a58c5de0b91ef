"""The two sagas, step by step: given replies, then the next command, compensations, outcome."""

from __future__ import annotations

import uuid

import pytest

from orchestrator.sagas.definitions import CANCEL_ORDER, PLACE_ORDER
from orchestrator.sagas.engine import (
    NotApplicable,
    SagaDefinition,
    Step,
    undone_by_force_compensate,
)
from orchestrator.sagas.tests.harness import Given

ORDER, CUSTOMER = str(uuid.uuid4()), str(uuid.uuid4())
PLACE = {"order_id": ORDER, "customer_id": CUSTOMER, "items": [{"menu_item_id": 1, "quantity": 2}]}


def placing() -> Given:
    return Given(PLACE_ORDER, PLACE)


def test_place_order_happy_path_sends_each_command_in_turn() -> None:
    saga = placing()
    assert saga.commands == ["order.create_pending"]

    saga.reply(total=700).reply().reply(entry_id=1).reply()

    assert saga.commands == [
        "order.create_pending",
        "customer.verify",
        "account.debit",
        "order.approve",
    ]
    assert (
        saga.sent[2].payload.model_dump()["amount"] == 700
    )  # the total the order service computed
    assert saga.status == "completed"
    assert saga.step_states == ["succeeded"] * 4


def test_unknown_menu_item_rejects_without_compensation() -> None:
    saga = placing().reply(ok=False, reason="unknown_menu_item")

    assert saga.commands == ["order.create_pending"]
    assert (saga.status, saga.state.reason) == ("rejected", "unknown_menu_item")
    assert saga.step_states[0] == "failed"


@pytest.mark.parametrize("reason", ["unknown_customer", "customer_blocked"])
def test_a_customer_who_may_not_order_gets_the_order_rejected(reason: str) -> None:
    saga = placing().reply(total=700).reply(ok=False, reason=reason)

    assert saga.last.command == "order.reject"
    assert saga.last.payload.model_dump()["reason"] == reason
    assert saga.status == "compensating"

    saga.reply()

    assert (saga.status, saga.state.reason) == ("rejected", reason)
    assert saga.step_states == ["compensated", "failed", "pending", "pending"]


def test_insufficient_funds_compensates_the_order_but_refunds_nothing() -> None:
    saga = placing().reply(total=700).reply().reply(ok=False, reason="insufficient_funds").reply()

    assert saga.commands[-2:] == ["account.debit", "order.reject"]  # no account.refund
    assert (saga.status, saga.state.reason) == ("rejected", "insufficient_funds")


def test_a_step_that_never_answers_is_resent_then_compensated_with_its_own_effect() -> None:
    saga = placing().reply(total=700).reply()

    saga.timeout()  # attempt 2 of the debit
    assert saga.last.command == "account.debit" and saga.last.attempt == 2
    saga.timeout()  # out of attempts: the debit may or may not have happened

    assert saga.last.command == "account.refund"
    saga.reply(refunded=0)
    assert saga.last.command == "order.reject"
    assert saga.last.payload.model_dump()["reason"] == "timeout"
    saga.reply()
    assert (saga.status, saga.state.reason) == ("rejected", "timeout")
    assert saga.step_states == ["compensated", "succeeded", "compensated", "pending"]


def test_resends_back_off() -> None:
    saga = placing().timeout()

    assert [s.deadline_in_s for s in saga.sent] == [1.0, 2.0]


def test_after_the_pivot_a_step_is_retried_until_it_succeeds_never_compensated() -> None:
    saga = placing().reply(total=700).reply().reply()
    saga.reply(ok=False, reason="order_not_pending")  # a "no" after the pivot is retried later
    assert saga.status == "running"

    saga.timeout(2)
    assert saga.commands.count("order.approve") == 3
    assert "account.refund" not in saga.commands

    saga.timeout()  # past fail_after: an operator decides
    assert saga.status == "failed"
    assert "needs_operator" in saga.notes

    saga.operator("retry")
    assert (saga.status, saga.last.command, saga.last.attempt) == ("running", "order.approve", 4)
    saga.reply()
    assert saga.status == "completed"


def test_a_compensation_is_retried_then_left_to_an_operator_who_resumes() -> None:
    saga = placing().reply(total=700).reply(ok=False, reason="customer_blocked")
    saga.reply(ok=False, reason="busy").timeout(3)

    assert saga.commands.count("order.reject") == 3
    assert saga.status == "failed"

    saga.operator("resume")  # the operator rejected the order by hand
    assert (saga.status, saga.state.reason) == ("rejected", "customer_blocked")


def test_force_compensate_undoes_what_may_have_happened() -> None:
    saga = placing().reply(total=700).reply()  # the debit is outstanding

    saga.operator("force_compensate")

    assert saga.commands[-1] == "account.refund"
    saga.reply().reply()
    assert (saga.status, saga.state.reason) == ("rejected", "operator_compensated")


def test_operator_actions_on_an_ended_saga_are_refused() -> None:
    saga = placing().reply(ok=False, reason="unknown_menu_item")

    with pytest.raises(NotApplicable):
        saga.operator("retry")


def test_cancel_order_happy_path() -> None:
    saga = Given(CANCEL_ORDER, {"order_id": ORDER})

    saga.reply(customer_id=CUSTOMER, total=700).reply(refunded=700).reply()

    assert saga.commands == ["order.begin_cancel", "account.refund", "order.confirm_cancel"]
    assert saga.sent[1].payload.model_dump() == {
        "customer_id": uuid.UUID(CUSTOMER),
        "order_id": uuid.UUID(ORDER),
        "amount": 700,
    }
    assert saga.status == "completed"


def test_an_order_that_cannot_be_cancelled_rejects_the_cancellation() -> None:
    saga = Given(CANCEL_ORDER, {"order_id": ORDER}).reply(ok=False, reason="order_not_cancellable")

    assert (saga.status, saga.state.reason) == ("rejected", "order_not_cancellable")
    assert saga.commands == ["order.begin_cancel"]


def test_begin_cancel_that_times_out_is_undone() -> None:
    saga = Given(CANCEL_ORDER, {"order_id": ORDER}).timeout(2)

    assert saga.last.command == "order.undo_cancel"
    saga.reply()
    assert (saga.status, saga.state.reason) == ("rejected", "timeout")


def test_a_refund_is_never_given_up() -> None:
    saga = Given(CANCEL_ORDER, {"order_id": ORDER}).reply(customer_id=CUSTOMER, total=700)

    saga.timeout(2)

    assert saga.commands.count("account.refund") == 3
    assert "order.undo_cancel" not in saga.commands
    assert saga.status == "running"


def test_a_step_refused_after_a_resend_is_compensated_in_case_an_earlier_try_lands() -> None:
    # Found by the simulator (seed 1009): debit try 1 was late, try 2 was refused for want of
    # funds, the customer deposited, and try 1 then charged the rejected order.
    saga = placing().reply(total=700).reply().timeout()  # the debit is sent twice
    saga.reply(ok=False, reason="insufficient_funds")

    assert saga.last.command == "account.refund"  # voids the payment: a late try is refused
    saga.reply(refunded=0).reply()
    assert (saga.status, saga.state.reason) == ("rejected", "insufficient_funds")
    assert saga.step_states == ["compensated", "succeeded", "compensated", "pending"]


def test_force_compensate_is_refused_past_the_pivot() -> None:
    # It would refund an order that the approval still on its way then approves.
    saga = placing().reply(total=700).reply().reply()  # debited: approve_order is out
    saga.timeout(3)
    assert (saga.status, saga.last.command) == ("failed", "order.approve")

    assert undone_by_force_compensate(saga.definition, saga.state) == []
    with pytest.raises(NotApplicable, match="past its pivot"):
        saga.operator("force_compensate")
    saga.operator("retry").reply()
    assert saga.status == "completed"


def test_force_compensate_before_the_pivot_lists_what_it_undoes() -> None:
    saga = placing().reply(total=700).reply()  # the debit (the pivot) is outstanding

    assert undone_by_force_compensate(saga.definition, saga.state) == [
        ("debit", "account.refund"),
        ("create_order", "order.reject"),
    ]


def test_resume_is_refused_where_later_steps_need_the_reply() -> None:
    # Resuming begin_cancel would build the refund without the customer and the total.
    saga = Given(CANCEL_ORDER, {"order_id": ORDER})

    with pytest.raises(NotApplicable, match="customer_id, total"):
        saga.operator("resume")
    saga.operator("retry").reply(customer_id=CUSTOMER, total=700)
    assert saga.last.command == "account.refund"


def test_a_definition_has_at_most_one_pivot_and_nothing_compensated_after_it() -> None:
    step = PLACE_ORDER.steps[2]
    with pytest.raises(ValueError, match="one pivot"):
        SagaDefinition("twice", 1, (step, step))
    with pytest.raises(ValueError, match="after the pivot"):
        SagaDefinition(
            "late",
            1,
            (step, Step("after", step.command, step.build, compensation=step.compensation)),
        )


def test_a_steps_attempts_count_its_own_sends_not_its_compensations() -> None:
    saga = placing().reply(total=700).reply()
    saga.timeout(2)  # the debit sent twice, then given up: refunded, and its refund re-sent
    saga.timeout()

    debit = [s for s in saga.sent if s.step == "debit"]
    assert [(s.command, s.attempt) for s in debit] == [
        ("account.debit", 1),
        ("account.debit", 2),
        ("account.refund", 1),
        ("account.refund", 2),
    ]
    assert saga.state.attempts[2] == 2
