"""The console's trace says where each transition's old and new values came from, and what was noted."""

from __future__ import annotations

import html

from fieldrelay.state import PipelineState
from fieldrelay.steps import Step
from tests.receiver.console.test_console import EVENT, client, settings, signed_in, state  # noqa: F401 (fixtures)


def test_the_trace_shows_transition_sources_and_notes(signed_in, state: PipelineState):  # noqa: F811
    state.save_event("ev-t", EVENT)
    state.trace(
        "ev-t",
        Step.RECEIVED,
        via="webhook",
        clamped="timestamp 4102444800 was more than 300 s ahead of the receiver's clock; ordered as received at 1",
        uri="uri 'https://api.servicetrade.com/api/invoice/35789' names another record than job 35769",
    )
    transitions = {
        "status": {"old": "scheduled", "new": "completed", "old_from": "snapshot", "new_from": "current value"},
        "type": {"old": None, "new": "repair", "old_from": "no earlier version known", "new_from": "current value"},
    }
    state.trace("ev-t", Step.RULE_MATCHED, rule="done", reason="matched", transitions=transitions)
    page = html.unescape(signed_in.get("/console/events/ev-t").text)
    assert '<code>status</code>: "scheduled" (snapshot) → "completed" (current value)' in page
    assert '<code>type</code>: ? (no earlier version known) → "repair" (current value)' in page
    assert "clamped: timestamp 4102444800 was more than 300 s ahead" in page
    assert "uri: uri 'https://api.servicetrade.com/api/invoice/35789' names another record" in page
