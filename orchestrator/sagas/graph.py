"""A saga definition drawn as a mermaid flowchart: steps, compensations, the pivot, outcomes."""

from __future__ import annotations

from orchestrator.sagas.engine import SagaDefinition


def mermaid(definition: SagaDefinition) -> str:
    lines = [
        "flowchart LR",
        f"    %% {definition.name} v{definition.version}",
        "    start((start))",
    ]
    previous = "start"
    for i, step in enumerate(definition.steps):
        node = f"s{i}"
        label = f"{step.name}<br/><code>{step.command}</code>"
        if i == definition.pivot:
            label += "<br/><b>pivot</b>"
        if definition.retriable(i):
            label += "<br/><i>retried until it succeeds</i>"
        lines.append(f'    {node}["{label}"]')
        lines.append(f"    {previous} -->|ok| {node}")
        if step.compensation:
            lines.append(f'    c{i}["{step.compensation.command}"]')
            lines.append(f"    c{i} -.-> {_first_compensation_at_or_before(definition, i - 1)}")
        previous = node
    lines.append("    completed((completed))")
    lines.append(f"    {previous} -->|ok| completed")
    lines.append("    rejected((rejected))")
    for i, step in enumerate(definition.steps):
        if definition.retriable(i):
            continue
        target = _first_compensation_at_or_before(definition, i - 1)
        lines.append(f"    s{i} -.->|fails| {target}")
        if step.compensation:
            lines.append(f"    s{i} -.->|times out| c{i}")
    return "\n".join(lines) + "\n"


def _first_compensation_at_or_before(definition: SagaDefinition, index: int) -> str:
    for k in range(index, -1, -1):
        if definition.steps[k].compensation:
            return f"c{k}"
    return "rejected"
