"""Every create without a natural key, killed between the target's answer and our record of it, then run
again: the second run finds the record the first one made (the connectors' `find_*` read-backs, against the
sandboxes over HTTP, with the intents in a real Redis), and the target holds it once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from fieldrelay.settings import Settings
from sandbox.runner import SandboxRunner
from tests.contracts.conftest import PASSWORD, SYNCHROTEAM_KEY, Served
from workers.actions.context import ActionContext, MemoryLinkStore
from workers.actions.registry import ACTIONS
from workers.admission import Deferred
from workers.clients import SettingsClients
from workers.intents import RedisIntents

JOB_ID = 35769  # seeded in the ServiceTrade sandbox


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it in the action runs, and no `except Exception` sees it."""


class DiesBeforeTheRecord(MemoryLinkStore):
    """A link store whose first write never happens: the process 'dies' right after the target answered."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = True

    def set(self, key: str, value: str) -> None:
        if self.armed:
            self.armed = False
            raise Killed
        super().set(key, value)


@dataclass(frozen=True)
class Case:
    sandbox: str
    params: dict[str, Any]
    records: Callable[[Any], int]  # how many records of this kind the sandbox's state holds


CASES = {
    "servicetrade.job.comment": Case(
        "servicetrade",
        {"jobId": JOB_ID, "content": "Copied to Synchroteam", "visibility": ["tech"]},
        lambda st: sum(1 for c in st.all("comment") if c.get("entityId") == JOB_ID),
    ),
    "servicetrade.job.comment#no-marker": Case(
        "servicetrade",
        {"jobId": JOB_ID, "content": "Copied to Synchroteam", "marker": False},
        lambda st: sum(1 for c in st.all("comment") if c.get("entityId") == JOB_ID),
    ),
    "servicetrade.appointment.create": Case(
        "servicetrade",
        {"jobId": JOB_ID, "windowStart": 1800000000, "windowEnd": 1800003600, "techIds": [6]},
        lambda st: sum(1 for a in st.all("appointment") if a.get("jobId") == JOB_ID),
    ),
    "servicetrade.job.create": Case(
        "servicetrade",
        {"locationId": 33, "type": "repair", "description": "Follow-up of job 35769"},
        lambda st: sum(1 for j in st.all("job") if j.get("description") == "Follow-up of job 35769"),
    ),
    "servicetrade.attachment.upload": Case(
        "servicetrade",
        {"entityId": JOB_ID, "fileName": "report-35769.txt", "contentType": "text/plain", "content": "Hood cleaned"},
        lambda st: sum(1 for a in st.all("attachment") if a.get("fileName") == "report-35769.txt"),
    ),
    "synchroteam.activity.upsert": Case(
        "synchroteam",
        {
            "activityType": {"id": 597},
            "note": "ServiceTrade job 35769",
            "dateStart": "2026-05-01 12:00",
            "dateEnd": "2026-05-01 12:45",
            "user": {"id": 1551},
        },
        lambda st: len(st.records["activity"]),
    ),
    "synergist.activity.create": Case(
        "synergist",
        {"activityActivitytypeCode": "Notes", "activityClientCode": "1/C4126", "activitySubject": "job 35769 done"},
        lambda st: len(st.tables["activities"]),
    ),
    "synergist.job.create": Case(
        "synergist",
        {"varJobTemplate": "1/00100001", "jobClientCode": "1/C4126", "jobDescription": "Repair 35769"},
        lambda st: len(st.tables["jobs"]),
    ),
    "synergist.calendar.create": Case(
        "synergist",
        {
            "calTimeSummaryInternal": 1005543,
            "calIsoDateTimeStart": "2026-07-11T09:00:00",
            "calIsoDateTimeEnd": "2026-07-11T11:00:00",
            "calDurationDecimalHours": 2,
            "calResourceId": 54,
        },
        lambda st: len(st.tables["calendar"]),
    ),
    "synergist.timesheet.create": Case(
        "synergist",
        {
            "tspJobAndPhase": "1/00000510.001",
            "tspTimeDate": "2026-07-18",
            "tspResourceCode": "1/USER",
            "tspHoursNormal": 2,
            "tspWorkDone": "job 35769",
        },
        lambda st: len(st.tables["tspending"]),
    ),
}


@pytest.fixture
def clients(shared_runner: SandboxRunner) -> Iterator[SettingsClients]:
    urls = shared_runner.urls
    made = SettingsClients(
        Settings(
            _env_file=None,
            servicetrade_base_url=urls["servicetrade"],
            servicetrade_username="sandbox",
            servicetrade_password=SecretStr(PASSWORD),
            synchroteam_base_url=urls["synchroteam"],
            synchroteam_domain="sandbox",
            synchroteam_api_key=SecretStr(SYNCHROTEAM_KEY),
            synergist_base_url=urls["synergist"],
            synergist_user="sandbox",
            synergist_password=SecretStr(PASSWORD),
            http_timeout=5.0,
        )
    )
    yield made
    made.close()


def call(name: str, ctx: ActionContext, clients: SettingsClients) -> dict[str, Any]:
    spec = ACTIONS[name.split("#")[0]]
    return spec.run(clients, spec.params.model_validate(CASES[name].params), ctx)


def context(links: MemoryLinkStore, intents: RedisIntents, event_id: str = "ev-1") -> ActionContext:
    return ActionContext(event_id, "rule", 0, "servicetrade:job:35769:rule:step#0", links, intents=intents)


@pytest.mark.parametrize("name", list(CASES))
def test_a_create_killed_before_its_record_is_found_again_not_repeated(
    name: str, shared: Callable[[str], Served], clients: SettingsClients, redis_client: redis.Redis
) -> None:
    case = CASES[name]
    served = shared(case.sandbox)
    before = case.records(served.state)
    links, intents = DiesBeforeTheRecord(), RedisIntents(redis_client, settle=0.0)

    with pytest.raises(Killed):
        call(name, context(links, intents), clients)
    assert case.records(served.state) == before + 1  # the target made it; we never recorded it

    again = call(name, context(links, intents), clients)  # the redelivery
    assert again["recovered"] is True
    assert case.records(served.state) == before + 1
    assert links.links  # now recorded: a third run would not even look
    assert call(name, context(links, intents), clients).get("recovered") is None


@pytest.mark.parametrize("name", list(CASES))
def test_a_create_killed_before_its_call_landed_is_made_once(
    name: str, shared: Callable[[str], Served], clients: SettingsClients, redis_client: redis.Redis
) -> None:
    case = CASES[name]
    served = shared(case.sandbox)
    before = case.records(served.state)
    links, intents = MemoryLinkStore(), RedisIntents(redis_client, settle=0.0)
    ctx = context(links, intents)
    key = next(iter(_link_keys(name, ctx)))
    intents.begin(key, {})  # an attempt that recorded its intent, then died before its call went out

    result = call(name, ctx, clients)
    assert result.get("recovered") is None
    assert case.records(served.state) == before + 1


def test_a_read_back_waits_until_the_earlier_call_cannot_be_in_flight(
    shared: Callable[[str], Served], clients: SettingsClients, redis_client: redis.Redis
) -> None:
    served = shared("servicetrade")
    links, intents = DiesBeforeTheRecord(), RedisIntents(redis_client, settle=30.0)
    with pytest.raises(Killed):
        call("servicetrade.job.comment", context(links, intents), clients)
    listed = len(served.requests())
    with pytest.raises(Deferred) as deferred:
        call("servicetrade.job.comment", context(links, intents), clients)
    assert deferred.value.reason == "intent" and 29 < deferred.value.seconds <= 30
    assert len(served.requests()) == listed  # no read-back and no second post yet


def test_the_marker_tells_our_comment_from_the_same_text_posted_by_someone_else(
    shared: Callable[[str], Served], clients: SettingsClients, redis_client: redis.Redis
) -> None:
    served = shared("servicetrade")
    links, intents = MemoryLinkStore(), RedisIntents(redis_client, settle=0.0)
    ctx = context(links, intents)
    key = next(iter(_link_keys("servicetrade.job.comment", ctx)))
    intents.begin(key, {"content": "whatever"})  # an earlier attempt died before its post landed
    served.state.create("comment", {"content": "Copied to Synchroteam", "entityType": 3, "entityId": JOB_ID})

    result = call("servicetrade.job.comment", ctx, clients)
    assert result.get("recovered") is None
    mine = [c for c in served.state.all("comment") if c.get("entityId") == JOB_ID and "[fieldrelay:" in c["content"]]
    assert [c["id"] for c in mine] == [result["id"]]
    assert mine[0]["content"] == f"Copied to Synchroteam\n[fieldrelay:{ctx.call_key()[:12]}]"


def _link_keys(name: str, ctx: ActionContext) -> list[str]:
    action = name.split("#")[0]
    if action == "servicetrade.job.comment":
        return [f"{action}:{ctx.call_key()}"]
    if action == "servicetrade.attachment.upload":
        return [f"{action}:{ctx.call_key()}:{CASES[name].params['fileName']}"]
    return [ctx.link_key(action)]
