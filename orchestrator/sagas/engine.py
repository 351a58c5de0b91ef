"""The saga state machine, as pure functions: given a state and what happened, the next state
and the commands to send. No database and no broker here, so every rule is unit-testable;
``services`` persists the result and writes the commands to the outbox in one transaction.

A saga runs its steps forward. A business failure of a step compensates the steps before it,
in reverse order; a step that never answers (after its retries) is compensated too, since its
effect is unknown. Retriable steps (those after the pivot) and compensations are retried until
they succeed; past ``fail_after`` attempts the saga is ``failed`` and waits for an operator.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from common.messaging.contract import Payload


class Status(enum.StrEnum):
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    REJECTED = "rejected"
    FAILED = "failed"


class Phase(enum.StrEnum):
    FORWARD = "forward"
    COMPENSATE = "compensate"
    DONE = "done"


class StepState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a business "no": it had no effect
    TIMED_OUT = "timed_out"  # no answer: its effect is unknown, so it is compensated too
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"


TERMINAL = frozenset({Status.COMPLETED, Status.REJECTED})

Data = Mapping[str, Any]
Build = Callable[[Data], Payload]


@dataclass(frozen=True)
class Compensation:
    """The command that undoes a step, and how to build its payload from the saga's data."""

    command: str
    build: Build


@dataclass(frozen=True)
class Step:
    name: str
    command: str
    build: Build
    compensation: Compensation | None = None
    # Keys of the reply's result kept in the saga's data for later steps.
    keep: tuple[str, ...] = ()
    # The last step that can fail the saga: every step after it is retried until it succeeds,
    # and is never compensated.
    pivot: bool = False


@dataclass(frozen=True)
class SagaDefinition:
    name: str
    version: int
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        pivots = [i for i, s in enumerate(self.steps) if s.pivot]
        if len(pivots) > 1:
            raise ValueError(f"{self.name}: more than one pivot")
        if pivots and any(s.compensation for s in self.steps[pivots[0] + 1 :]):
            raise ValueError(f"{self.name}: a step after the pivot cannot be compensated")

    @property
    def pivot(self) -> int | None:
        """Index of the last step that can still fail the saga."""
        return next((i for i, s in enumerate(self.steps) if s.pivot), None)

    def retriable(self, index: int) -> bool:
        """After the pivot: retried until it succeeds, never compensated into."""
        pivot = self.pivot
        return pivot is not None and index > pivot


@dataclass(frozen=True)
class Policy:
    max_attempts: int = 4  # tries of a forward step before it counts as timed out
    fail_after: int = 10  # tries of a retriable step or a compensation before an operator is needed
    reply_timeout_s: float = 5.0
    backoff_cap_s: float = 60.0

    def deadline_in(self, attempt: int) -> float:
        return min(self.reply_timeout_s * 2 ** (attempt - 1), self.backoff_cap_s)


@dataclass(frozen=True)
class State:
    status: Status
    phase: Phase
    current: int
    attempt: int
    data: Mapping[str, Any]
    steps: tuple[StepState, ...]
    # Each step's forward sends, all told (an operator's retry goes on counting; its
    # compensation's sends are not among them). ``attempt`` is what the policy counts: the
    # current command's sends since it started or an operator last acted.
    attempts: tuple[int, ...]
    reason: str | None = None

    def with_step(self, index: int, step_state: StepState, *, count_attempt: bool = False) -> State:
        steps = list(self.steps)
        steps[index] = step_state
        attempts = list(self.attempts)
        if count_attempt:
            attempts[index] += 1
        return replace(self, steps=tuple(steps), attempts=tuple(attempts))


@dataclass(frozen=True)
class Send:
    """Send a participant command for a step (or its compensation), with a reply deadline."""

    step: str
    command: str
    payload: Payload
    attempt: int
    compensation: bool
    deadline_in_s: float


@dataclass(frozen=True)
class Note:
    """An entry for the saga's history that is not a command (timeouts, retries, verdicts)."""

    kind: str
    step: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)


Action = Send | Note
Outcome = tuple[State, list[Action]]


def start(definition: SagaDefinition, data: Mapping[str, Any], policy: Policy) -> Outcome:
    n = len(definition.steps)
    state = State(
        status=Status.RUNNING,
        phase=Phase.FORWARD,
        current=0,
        attempt=0,
        data=dict(data),
        steps=(StepState.PENDING,) * n,
        attempts=(0,) * n,
    )
    return _run_forward(definition, state, 0, policy)


def _run_forward(definition: SagaDefinition, state: State, index: int, policy: Policy) -> Outcome:
    if index >= len(definition.steps):
        done = replace(state, status=Status.COMPLETED, phase=Phase.DONE, current=index, attempt=0)
        return done, [Note("completed", None)]
    step = definition.steps[index]
    state = replace(state, status=Status.RUNNING, current=index, attempt=1)
    state = state.with_step(index, StepState.RUNNING, count_attempt=True)
    return state, [_send(step, state, policy, compensation=False)]


def _send(step: Step, state: State, policy: Policy, *, compensation: bool) -> Send:
    if compensation:
        assert step.compensation is not None
        command = step.compensation.command
        payload = step.compensation.build({**state.data, "reason": state.reason})
    else:
        command, payload = step.command, step.build(state.data)
    # A forward command is numbered as the step's send it is, so the history, the step's
    # ``attempts`` and the saga's list agree after an operator's retry too.
    return Send(
        step.name,
        command,
        payload,
        _number(state, compensation=compensation),
        compensation,
        policy.deadline_in(state.attempt),
    )


def _number(state: State, *, compensation: bool) -> int:
    """The current command's send as the history numbers it (see ``State.attempts``)."""
    return state.attempt if compensation else state.attempts[state.current]


MAY_HAVE_EFFECT = frozenset({StepState.SUCCEEDED, StepState.TIMED_OUT})


def _may_have_effect(state: State, index: int) -> bool:
    """A "no" answers one attempt only: when the step was sent more than once, an earlier
    attempt still on its way may yet take effect (a debit refused for want of funds, then an
    older copy charging after a deposit), so a failed step sent twice is compensated too."""
    step_state = state.steps[index]
    return step_state in MAY_HAVE_EFFECT or (
        step_state is StepState.FAILED and state.attempts[index] > 1
    )


def _compensate_from(
    definition: SagaDefinition, state: State, index: int, policy: Policy
) -> Outcome:
    """Compensate, newest first, every step at or before ``index`` whose effect may exist."""
    for k in range(index, -1, -1):
        step = definition.steps[k]
        if step.compensation and _may_have_effect(state, k):
            nxt = replace(
                state, status=Status.COMPENSATING, phase=Phase.COMPENSATE, current=k, attempt=1
            )
            nxt = nxt.with_step(k, StepState.COMPENSATING)
            return nxt, [_send(step, nxt, policy, compensation=True)]
    done = replace(state, status=Status.REJECTED, phase=Phase.DONE, current=0, attempt=0)
    return done, [Note("rejected", None, {"reason": state.reason})]


def on_reply(
    definition: SagaDefinition,
    state: State,
    *,
    ok: bool,
    reason: str | None,
    result: Mapping[str, Any],
    policy: Policy,
) -> Outcome:
    """The reply to the outstanding command (the caller has matched it)."""
    step = definition.steps[state.current]
    if state.phase is Phase.FORWARD:
        if ok:
            kept = {key: result[key] for key in step.keep if key in result}
            nxt = replace(state, data={**state.data, **kept}).with_step(
                state.current, StepState.SUCCEEDED
            )
            return _run_forward(definition, nxt, state.current + 1, policy)
        if definition.retriable(state.current):
            return _retry_later(state, step, policy, note={"reason": reason})
        failed = replace(state, reason=reason or "failed").with_step(
            state.current, StepState.FAILED
        )
        outcome, actions = _compensate_from(definition, failed, state.current, policy)
        return outcome, [Note("step_failed", step.name, {"reason": reason}), *actions]
    if state.phase is Phase.COMPENSATE:
        if ok:
            nxt = state.with_step(state.current, StepState.COMPENSATED)
            return _compensate_from(definition, nxt, state.current - 1, policy)
        return _retry_later(state, step, policy, note={"reason": reason})
    return state, [Note("ignored_reply", step.name, {"why": "saga already ended"})]


def _retry_later(state: State, step: Step, policy: Policy, *, note: Mapping[str, Any]) -> Outcome:
    """Keep the step outstanding; the deadline sweep sends it again. Nothing to send now."""
    return state, [Note("retry_scheduled", step.name, note)]


def on_timeout(definition: SagaDefinition, state: State, policy: Policy) -> Outcome:
    """The outstanding command's deadline passed without a matching reply."""
    if state.status in TERMINAL or state.status is Status.FAILED:
        return state, []
    step = definition.steps[state.current]
    compensating = state.phase is Phase.COMPENSATE
    persistent = compensating or definition.retriable(state.current)
    if not persistent and state.attempt >= policy.max_attempts:
        timed_out = replace(state, reason="timeout").with_step(state.current, StepState.TIMED_OUT)
        outcome, actions = _compensate_from(definition, timed_out, state.current, policy)
        sent = _number(state, compensation=False)
        return outcome, [Note("timeout", step.name, {"attempts": sent}), *actions]
    if persistent and state.attempt >= policy.fail_after:
        failed = replace(state, status=Status.FAILED)
        sent = _number(state, compensation=compensating)
        return failed, [Note("needs_operator", step.name, {"attempts": sent})]
    nxt = replace(state, attempt=state.attempt + 1)
    nxt = nxt.with_step(state.current, state.steps[state.current], count_attempt=not compensating)
    return nxt, [
        Note("timeout", step.name, {"attempt": _number(state, compensation=compensating)}),
        _send(step, nxt, policy, compensation=compensating),
    ]


# --- operator actions --------------------------------------------------------------------------


class NotApplicable(ValueError):
    pass


def operator_retry(definition: SagaDefinition, state: State, policy: Policy) -> Outcome:
    """Send the current step (or compensation) again now; the policy counts its tries afresh
    (the history goes on numbering a forward step's sends)."""
    if state.status in TERMINAL:
        raise NotApplicable("the saga has ended")
    compensating = state.phase is Phase.COMPENSATE
    status = Status.COMPENSATING if compensating else Status.RUNNING
    nxt = replace(state, status=status, attempt=1).with_step(
        state.current, state.steps[state.current], count_attempt=not compensating
    )
    step = definition.steps[state.current]
    return nxt, [
        Note("operator_retry", step.name),
        _send(step, nxt, policy, compensation=compensating),
    ]


def operator_resume(definition: SagaDefinition, state: State, policy: Policy) -> Outcome:
    """The operator vouches the current step (or compensation) took effect: carry on after it."""
    if state.status in TERMINAL:
        raise NotApplicable("the saga has ended")
    step = definition.steps[state.current]
    missing = [key for key in step.keep if key not in state.data]
    if state.phase is Phase.FORWARD and missing:
        # Later steps are built from this step's reply; an operator cannot vouch for that data.
        raise NotApplicable(
            f"the reply of {step.name} carries {', '.join(missing)} for later steps: retry it"
        )
    resumed = replace(
        state, status=Status.COMPENSATING if state.phase is Phase.COMPENSATE else Status.RUNNING
    )
    outcome, actions = on_reply(definition, resumed, ok=True, reason=None, result={}, policy=policy)
    return outcome, [Note("operator_resume", step.name), *actions]


def force_compensate_offered(definition: SagaDefinition, state: State) -> bool:
    """Up to the pivot a saga can still give up; after it, the order goes through (a refund of
    an order that a late approval then approves would give it away): only retry and resume."""
    return state.status not in TERMINAL and not (
        state.phase is Phase.FORWARD and definition.retriable(state.current)
    )


def undone_by_force_compensate(definition: SagaDefinition, state: State) -> list[tuple[str, str]]:
    """(step, compensation command) that force-compensate would send, newest first."""
    if not force_compensate_offered(definition, state):
        return []
    undo = []
    for k in range(state.current, -1, -1):
        compensation = definition.steps[k].compensation
        current = k == state.current and state.steps[k] is not StepState.COMPENSATED
        if compensation and (current or _may_have_effect(state, k)):
            undo.append((definition.steps[k].name, compensation.command))
    return undo


def operator_force_compensate(definition: SagaDefinition, state: State, policy: Policy) -> Outcome:
    """Abandon the forward path: compensate what was done, including the current step's maybe-effect."""
    if state.status in TERMINAL:
        raise NotApplicable("the saga has ended")
    if not force_compensate_offered(definition, state):
        raise NotApplicable("it is past its pivot: only retry or resume")
    step = definition.steps[state.current]
    if state.phase is Phase.COMPENSATE:
        return operator_retry(definition, state, policy)
    # The current step's effect is unknown: compensate it too (as for a timeout).
    marked = replace(state, reason=state.reason or "operator_compensated")
    marked = marked.with_step(state.current, StepState.TIMED_OUT)
    outcome, actions = _compensate_from(definition, marked, state.current, policy)
    return outcome, [Note("operator_force_compensate", step.name), *actions]
