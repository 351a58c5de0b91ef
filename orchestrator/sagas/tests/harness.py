"""A small given/when/then harness for saga definitions: no database, no broker.

saga = Given(PLACE_ORDER, data)          # started: the first command is out
saga.reply(ok=True, total=900)           # when a reply comes
assert saga.sent[-1].command == "..."    # then this is sent next
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.sagas import engine
from orchestrator.sagas.engine import Policy, SagaDefinition, Send

POLICY = Policy(max_attempts=2, fail_after=3, reply_timeout_s=1.0, backoff_cap_s=4.0)


class Given:
    def __init__(
        self, definition: SagaDefinition, data: Mapping[str, Any], policy: Policy = POLICY
    ) -> None:
        self.definition = definition
        self.policy = policy
        self.sent: list[Send] = []
        self.notes: list[str] = []
        self._take(engine.start(definition, data, policy))

    def _take(self, outcome: engine.Outcome) -> Given:
        self.state, actions = outcome
        for action in actions:
            if isinstance(action, Send):
                self.sent.append(action)
            else:
                self.notes.append(action.kind)
        return self

    def reply(self, *, ok: bool = True, reason: str | None = None, **result: Any) -> Given:
        return self._take(
            engine.on_reply(
                self.definition, self.state, ok=ok, reason=reason, result=result, policy=self.policy
            )
        )

    def timeout(self, times: int = 1) -> Given:
        for _ in range(times):
            self._take(engine.on_timeout(self.definition, self.state, self.policy))
        return self

    def operator(self, action: str) -> Given:
        act = {
            "retry": engine.operator_retry,
            "resume": engine.operator_resume,
            "force_compensate": engine.operator_force_compensate,
        }[action]
        return self._take(act(self.definition, self.state, self.policy))

    @property
    def commands(self) -> list[str]:
        return [s.command for s in self.sent]

    @property
    def last(self) -> Send:
        return self.sent[-1]

    @property
    def status(self) -> str:
        return self.state.status.value

    @property
    def step_states(self) -> list[str]:
        return [s.value for s in self.state.steps]
