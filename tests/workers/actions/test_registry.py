"""The registry's names and models, and the generated reference."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from workers.actions.reference import READ_BACKS, render_reference
from workers.actions.registry import ACTIONS, action_params

REQUIRED = {
    "synchroteam.job.upsert",
    "synchroteam.customer.upsert",
    "synchroteam.site.upsert",
    "synchroteam.equipment.upsert",
    "synchroteam.activity.upsert",
    "synchroteam.job.schedule",
    "synchroteam.job.unschedule",
    "synchroteam.job.cancel",
    "synchroteam.job.validate",
    "synchroteam.job.confirm",
    "synchroteam.job.complete",
    "synergist.activity.create",
    "synergist.activity.update",
    "synergist.activity.delete",
    "synergist.job.create",
    "synergist.job.update",
    "synergist.calendar.create",
    "synergist.calendar.update",
    "synergist.calendar.delete",
    "synergist.timesheet.create",
    "servicetrade.job.comment",
    "servicetrade.job.update",
    "servicetrade.appointment.create",
    "servicetrade.externalid.set",
    "http.request",
    # issue 15: the two-way flow
    "servicetrade.job.create",
    "servicetrade.appointment.update",
    "servicetrade.appointment.complete",
    "servicetrade.servicerequest.update",
    "servicetrade.attachment.upload",
    "synchroteam.job.parts",
    "synchroteam.job.report",
    "synchroteam.lookup",
    "synergist.phase.list",
    "synergist.calendar.unallocated",
}


def test_every_required_action_is_registered() -> None:
    assert set(ACTIONS) == REQUIRED
    for name, spec in ACTIONS.items():
        assert spec.name == name and name.split(".")[0] == spec.target
        assert issubclass(spec.params, BaseModel)
    assert action_params() == {name: spec.params for name, spec in ACTIONS.items()}


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_unknown_fields_are_errors_at_their_own_location(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        ACTIONS[name].params.model_validate({"notAField": 1})
    assert ("notAField",) in [e["loc"] for e in info.value.errors()]


def test_reference_lists_every_action_and_parameter() -> None:
    text = render_reference()
    for name in ACTIONS:
        assert f"## `{name}`" in text
    assert "| `myId` | str | no |" in text
    assert "| `activityType` | {id, name} | yes |" in text
    assert '| `priority` | "low" \\| "medium" \\| "high" | no |' in text
    assert "| `json` | any | no | JSON body |" in text
    assert "Custom fields: `custom_fields: {activityCustomField<N>: value}`." in text
    assert "| `custom_fields` | dict[str, any] | no | jobCustomField<N> values, sent as they are |" in text


def test_single_expression_templates_render_ints_that_string_fields_accept():
    from workers.actions.registry import ACTIONS

    params = ACTIONS["synchroteam.job.upsert"].params.model_validate({"myId": "st-job-1", "description": 35769})
    assert params.description == "35769"  # type: ignore[attr-defined]


def test_every_create_without_a_natural_key_says_how_it_is_read_back_after_a_crash() -> None:
    creates = {
        n
        for n in ACTIONS
        if n.endswith(".create") or n in {"servicetrade.job.comment", "servicetrade.attachment.upload", "http.request"}
    }
    creates.add("synchroteam.activity.upsert")  # upserts on id only: a create until its id is known
    assert creates == set(READ_BACKS)
