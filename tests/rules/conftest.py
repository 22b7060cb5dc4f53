"""Stand-in action param models (the real ones live in workers/) and rule-file factories."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, create_model

from fieldrelay.events import ChangeEvent, EntityRef, FieldChange
from rules import RuleLoadError, RuleSet, load_rules


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Ref(Strict):
    myId: str | None = None
    id: int | None = None


class CustomerUpsert(Strict):
    myId: str
    name: str
    address: str | None = None


class JobUpsert(Strict):
    myId: str
    description: str | None = None
    customer: Ref
    priority: Literal["low", "medium", "high"] = "medium"
    duration: int | None = None


class ActivityCreate(Strict):
    link_kind: ClassVar[str] = "synergist.activity"  # keeps a link, like the real one
    activityActivitytypeCode: str
    activityClientCode: str
    activitySubject: str | None = None
    activityDetails: str | None = None


class HttpRequest(Strict):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str
    json_: Any = Field(None, alias="json")
    headers: dict[str, str] = Field(default_factory=dict)


class JobComment(Strict):
    jobId: int | str
    content: str


ActionParams = dict[str, type[BaseModel]]


def loose(*names: str, writes: bool = True) -> type[BaseModel]:
    """A stand-in that knows a real action's parameter names, not their types (rules/examples uses these)."""
    fields: dict[str, Any] = {name: (Any, None) for name in names}
    model = create_model("Loose", __base__=Strict, **fields)
    model.writes = writes  # type: ignore[attr-defined]  # as the real read-only action's model says
    return model


# The actions rules/examples/field_to_office.yaml calls, by the parameter names it gives them.
FIELD_TO_OFFICE: ActionParams = {
    "synchroteam.job.report": loose("id", writes=False),
    "synchroteam.job.validate": loose("myId"),
    "servicetrade.appointment.complete": loose("jobId"),
    "servicetrade.attachment.upload": loose(
        "entityType", "entityId", "purposeId", "fileName", "contentType", "description", "content", "synchroteam_photos"
    ),
    "synergist.timesheet.create": loose(
        "tspJobAndPhase", "tspTimeDate", "tspResourceCode", "tspHoursNormal", "tspWorkDone"
    ),
}


@pytest.fixture
def action_params() -> ActionParams:
    """A fresh action-name -> param-model mapping per test."""
    return {
        "synchroteam.customer.upsert": CustomerUpsert,
        "synchroteam.job.upsert": JobUpsert,
        "synergist.activity.create": ActivityCreate,
        "http.request": HttpRequest,
        "servicetrade.job.comment": JobComment,
        **FIELD_TO_OFFICE,
    }


@pytest.fixture
def write_rules(tmp_path: Path) -> Callable[..., Path]:
    """write_rules(text, name="rules.yaml") -> the file, with the text dedented."""

    def write(text: str, name: str = "rules.yaml") -> Path:
        path = tmp_path / "rules" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


@pytest.fixture
def load(write_rules: Callable[..., Path], action_params: ActionParams) -> Callable[..., RuleSet]:
    """load(text) -> RuleSet from one file holding the dedented text."""

    def load_text(text: str) -> RuleSet:
        path = write_rules(text)
        return load_rules(path.parent, action_params)

    return load_text


@pytest.fixture
def load_errors(write_rules: Callable[..., Path], action_params: ActionParams) -> Callable[..., list[str]]:
    """load_errors(text) -> every error line, with the file shown as `rules.yaml`."""

    def errors(text: str) -> list[str]:
        path = write_rules(text)
        with pytest.raises(RuleLoadError) as info:
            load_rules(path.parent, action_params)
        return [str(e).replace(str(path), "rules.yaml") for e in info.value.errors]

    return errors


@pytest.fixture
def make_event() -> Callable[..., ChangeEvent]:
    """make_event(changes={"status": ("scheduled", "completed")}, ...) -> ChangeEvent."""

    def make(
        *,
        source: str = "servicetrade",
        via: str = "webhook",
        action: str = "updated",
        entity: str = "job",
        id: int | str = 35769,
        changes: dict[str, tuple[Any, Any]] | None = None,
    ) -> ChangeEvent:
        fields = None if changes is None else {k: FieldChange(old=o, new=n) for k, (o, n) in changes.items()}
        return ChangeEvent(
            source=source,
            via=via,
            action=action,
            entity=EntityRef(type=entity, id=id),
            occurred_at=1401833052,
            changes=fields,
        )

    return make


THEN = "    then: [{http.request: {url: 'https://example.com'}}]\n"


class CountingLoader:
    """An entity loader that counts its calls."""

    def __init__(self, record=None):
        self.record, self.calls = record, 0

    def __call__(self):
        self.calls += 1
        return self.record


def job_record(**overrides: Any) -> dict[str, Any]:
    """A ServiceTrade job as `GET /job/{id}` returns it (abridged)."""
    record: dict[str, Any] = {
        "id": 35769,
        "type": "repair",
        "status": "completed",
        "name": "Job 112233",
        "number": 112233,
        "description": "Repair the hood in the front.",
        "completedOn": 1401833052,
        "customer": {"id": 39, "name": "Big Bang Burger Bar", "externalIds": {"synergist": "F667"}},
    }
    record.update(overrides)
    return record
