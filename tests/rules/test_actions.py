"""Action steps checked against param models: aliases, nested models, templates left for run time."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rules.actions import check_params, parse_action
from tests.rules.conftest import JobUpsert


class Tech(BaseModel):
    model_config = ConfigDict(extra="forbid")
    login: str


class Schedule(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    job_id: str = Field(alias="id")
    start: int = Field(ge=0)
    techs: list[Tech] = Field(default_factory=list)


class Anything(BaseModel):
    model_config = ConfigDict(extra="allow")
    url: str


def problems_of(model: type[BaseModel], params: dict[str, Any]) -> list[tuple[tuple, str]]:
    found: list = []
    check_params(model, params, ("p",), found)
    return found


def test_aliases_and_field_names_are_both_accepted_when_the_model_allows():
    assert problems_of(Schedule, {"id": "j1", "start": 5}) == []
    assert problems_of(Schedule, {"job_id": "j1", "start": 5}) == []
    assert problems_of(Schedule, {"start": 5}) == [(("p", "id"), "field required")]


def test_templates_skip_type_checks_but_nested_models_are_still_checked():
    assert problems_of(Schedule, {"id": "{{ event.entity.id }}", "start": "{{ entity.start }}"}) == []
    assert problems_of(Schedule, {"id": "x", "start": 1, "techs": [{"login": "{{ a }}", "name": "{{ b }}"}]}) == [
        (("p", "techs", 0, "name"), "unknown parameter 'name'"),
    ]


def test_literal_values_are_validated_where_they_sit():
    assert problems_of(Schedule, {"id": "x", "start": 1, "techs": [{"login": 5}]}) == [
        (("p", "techs", 0, "login"), "input should be a valid string, got 5"),
    ]
    assert problems_of(JobUpsert, {"myId": "x", "customer": {"myId": 1}}) == [
        (("p", "customer", "myId"), "input should be a valid string, got 1"),
    ]


def test_field_constraints_apply_to_literals():
    assert problems_of(Schedule, {"id": "x", "start": -1}) == [
        (("p", "start"), "input should be greater than or equal to 0, got -1"),
    ]


def test_models_that_allow_extra_keys_accept_them():
    assert problems_of(Anything, {"url": "x", "whatever": 1}) == []


def test_parse_action_returns_the_call_and_what_it_reads(action_params):
    found: list = []
    call, refs = parse_action(
        {
            "id": "job",
            "synchroteam.job.upsert": {
                "myId": "{{ vars.p }}-{{ event.entity.id }}",
                "customer": {"myId": "{{ steps.customer.myId }}"},
            },
        },
        ("then", 0),
        7,
        action_params,
        found,
    )
    assert found == []
    assert call is not None and (call.name, call.id, call.line) == ("synchroteam.job.upsert", "job", 7)
    assert refs == {("vars", "p"), ("event", "entity"), ("steps", "customer")}


def test_parse_action_shapes(action_params):
    found: list = []
    assert parse_action("http.request", ("s",), 1, action_params, found)[0] is None
    assert parse_action({"id": "x"}, ("s",), 1, action_params, found)[0] is None
    assert parse_action({"id": "a b", "http.request": {"url": "u"}}, ("s",), 1, action_params, found)[0] is None
    assert parse_action({"http.request": "u"}, ("s",), 1, action_params, found)[0] is None
    assert parse_action({"ide": "x", "http.request": {"url": "u"}}, ("s",), 1, action_params, found)[0] is None
    assert found == [
        (("s",), "expected a mapping like {synchroteam.job.upsert: {...}}"),
        (("s",), "no action given; expected one key naming the action"),
        (("s", "id"), "a step id must be a plain name like 'customer', got 'a b'"),
        (("s", "http.request"), "parameters must be a mapping, got 'u'"),
        (("s", "ide"), "unknown action 'ide'; did you mean 'id'?"),
    ]
