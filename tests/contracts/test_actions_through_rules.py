"""Every registered action, called by a small rule, through the pipeline functions, against the sandboxes.

Each case is a rule file (YAML text) and a check of the sandbox state it must leave behind. An event for
ServiceTrade job 35769 goes through `pipeline.process_event`; the actions it starts run one after another
through `pipeline.run_action`, with the real Redis state and the real connectors over HTTP.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from pydantic import SecretStr

from fieldrelay.events import ChangeEvent, EntityRef, FieldChange
from fieldrelay.settings import Settings
from fieldrelay.state import PipelineState
from fieldrelay.targets import target_limits
from rules import load_rules
from sandbox.faults import Fault
from sandbox.runner import SandboxRunner
from sandbox.synergist_store import SynergistState
from tests.contracts.conftest import PASSWORD, SYNCHROTEAM_KEY, Served
from workers import pipeline
from workers.actions.registry import ACTIONS, action_params
from workers.clients import SettingsClients
from workers.connectors.outbound import OutboundUnavailable
from workers.echo import EchoGuard
from workers.gate import TargetGate
from workers.rulebook import RuleBook
from workers.runs import RunCoordinator
from workers.runtime import Runtime

JOB_ID = 35769  # seeded: a completed repair job of customer 39 "Big Bang Burger Bar" at location 33


@dataclass
class World:
    """The sandboxes, a Runtime around real Redis, and a worker loop that runs what gets enqueued."""

    runner: SandboxRunner
    redis: redis.Redis
    rules_dir: Path
    monkeypatch: pytest.MonkeyPatch
    enqueued: list[tuple[str, str, int, str]] = field(default_factory=list)
    ran: list[tuple[str, str, int]] = field(default_factory=list)
    clients: SettingsClients | None = None

    def state(self, name: str) -> Any:
        return self.runner.apps[name].state.sandbox

    def log(self, name: str) -> list[dict[str, Any]]:
        return self.runner.apps[name].state.recorder.entries()

    def url(self, name: str) -> str:
        return self.runner.urls[name]

    def runtime(self, rules: str) -> Runtime:
        (self.rules_dir / "rules.yaml").write_text(rules.replace("HOOK_URL", self.url("hook")))
        # The loader checks a literal URL against the allowlist the environment gives, as the worker's does.
        self.monkeypatch.setenv("FIELDRELAY_HTTP_ALLOWED_HOSTS", urlsplit(self.url("hook")).netloc)
        load_rules(self.rules_dir, action_params())  # the file must load: every parameter checked at file:line
        settings = Settings(
            _env_file=None,
            servicetrade_base_url=self.url("servicetrade"),
            servicetrade_username="sandbox",
            servicetrade_password=SecretStr(PASSWORD),
            synchroteam_base_url=self.url("synchroteam"),
            synchroteam_domain="sandbox",
            synchroteam_api_key=SecretStr(SYNCHROTEAM_KEY),
            synergist_base_url=self.url("synergist"),
            synergist_user="sandbox",
            synergist_password=SecretStr(PASSWORD),
            http_timeout=5.0,
            # The hook sink listens on 127.0.0.1, which the egress policy refuses unless it is listed.
            http_allowed_hosts=[urlsplit(self.url("hook")).netloc],
        )
        self.clients = SettingsClients(settings)
        unpaced = {name: replace(row, rate=0) for name, row in target_limits(settings).items()}
        return Runtime(
            state=PipelineState(self.redis),
            clients=self.clients,
            rulebook=RuleBook(self.rules_dir, action_params()),
            enqueue_action=lambda *args: self.enqueued.append(args),
            gate=TargetGate(self.redis, unpaced),  # these tests stay far below the sandbox's limit
            targets=unpaced,
            runs=RunCoordinator(self.redis),
            echoes=EchoGuard(self.redis),
            schedule=lambda *args: pytest.fail(f"nothing should be delayed here: {args}"),
        )

    def deliver(self, rt: Runtime, event: ChangeEvent, task_id: str = "task-1") -> list[dict[str, Any]]:
        """`process_event`, then every action task it chains, in order, like one worker would."""
        verdicts = pipeline.process_event(event, task_id, rt)
        assert [v.matched for v in verdicts] == [True]
        return self.drain(rt)

    def drain(self, rt: Runtime) -> list[dict[str, Any]]:
        results = []
        while self.enqueued:
            event_id, digest, index, _queue = self.enqueued.pop(0)
            self.ran.append((event_id, digest, index))
            results.append(pipeline.run_action(event_id, digest, index, rt))
        return results

    def close(self) -> None:
        if self.clients is not None:
            self.clients.close()


@pytest.fixture
def world(
    shared_runner: SandboxRunner,
    shared: Callable[[str], Served],
    redis_client: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    for name in ("servicetrade", "synchroteam", "synergist", "hook"):
        shared(name)
    made = World(shared_runner, redis_client, tmp_path, monkeypatch)
    try:
        yield made
    finally:
        made.close()


def job_completed(occurred_at: int = 1_790_000_000) -> ChangeEvent:
    return ChangeEvent(
        source="servicetrade",
        via="webhook",
        action="updated",
        entity=EntityRef(type="job", id=JOB_ID, uri=f"https://api.servicetrade.com/api/job/{JOB_ID}"),
        occurred_at=occurred_at,
        changes={"status": FieldChange(old="scheduled", new="completed")},
    )


def rule(then: str) -> str:
    return f"""
rules:
  - name: case
    when: {{source: servicetrade, entity: job, action: updated}}
    then:
{then}"""


CUSTOMER = """
      - id: customer
        synchroteam.customer.upsert:
          myId: "st-company-{{ entity.customer.id }}"
          name: "{{ entity.customer.name }}\""""
JOB = (
    CUSTOMER
    + """
      - id: job
        synchroteam.job.upsert:
          myId: "st-job-{{ event.entity.id }}"
          description: "{{ entity.name }}"
          customer: {myId: "{{ steps.customer.myId }}"}"""
)
SYNERGIST_ACTIVITY = """
      - id: activity
        synergist.activity.create:
          activityActivitytypeCode: Notes
          activityClientCode: "1/C4126"
          activitySubject: "ServiceTrade job {{ entity.number }} completed\""""
BOOKING = """
      - id: booking
        synergist.calendar.create:
          calTimeSummaryInternal: 1005543
          calIsoDateTimeStart: "2026-07-11T09:00:00"
          calIsoDateTimeEnd: "2026-07-11T11:00:00"
          calDurationDecimalHours: 2
          calResourceId: 54"""


def synchroteam_job(w: World) -> dict[str, Any]:
    found = w.state("synchroteam").find("job", {"myId": f"st-job-{JOB_ID}"})
    assert found is not None
    return found


def lifecycle(op: str, extra: str = "") -> str:
    return rule(JOB + f'\n      - synchroteam.job.{op}:\n          myId: "{{{{ steps.job.myId }}}}"{extra}')


SCHEDULE = """
      - synchroteam.job.schedule:
          myId: "{{ steps.job.myId }}"
          scheduledStart: "2026-05-01 08:00:00"
          scheduledEnd: "2026-05-01 10:00:00"
          technician: {login: johndoe}"""


def check_customer(w: World, results: list[dict[str, Any]]) -> None:
    [customer] = [c for c in w.state("synchroteam").active("customer") if c["myId"] == "st-company-39"]
    assert customer["name"] == "Big Bang Burger Bar"
    assert results[0]["id"] == customer["id"]


def check_site(w: World, results: list[dict[str, Any]]) -> None:
    sy = w.state("synchroteam")
    site = sy.find("site", {"myId": "st-location-33"})
    assert (site["name"], site["addressCity"]) == (
        "Foo's Bar",
        w.state("servicetrade").get("location", 33)["address"]["city"],
    )
    assert site["customer"] == {"id": sy.find("customer", {"myId": "st-company-39"})["id"]}


def check_equipment(w: World, results: list[dict[str, Any]]) -> None:
    sy = w.state("synchroteam")
    equipment = sy.find("equipment", {"myId": f"st-job-{JOB_ID}-hood"})
    assert (equipment["name"], equipment["customer"]) == (
        "Hood",
        {"id": sy.find("customer", {"myId": "st-company-39"})["id"]},
    )


def check_job(w: World, results: list[dict[str, Any]]) -> None:
    job = synchroteam_job(w)
    assert (job["description"], job["status"]) == (f"Job {JOB_ID}", "created")
    assert job["customer"] == {"id": w.state("synchroteam").find("customer", {"myId": "st-company-39"})["id"]}


def check_activity(w: World, results: list[dict[str, Any]]) -> None:
    [activity] = [a for a in w.state("synchroteam").active("activity") if a["note"] == f"ServiceTrade job {JOB_ID}"]
    assert (activity["activityType"], activity["dateStart"], activity["user"]) == (
        {"id": 597},
        "2026-05-01 12:00",
        {"id": 1551},
    )


def check_status(status: str, **fields: Any) -> Callable[[World, list[dict[str, Any]]], None]:
    def check(w: World, results: list[dict[str, Any]]) -> None:
        job = synchroteam_job(w)
        assert job["status"] == status
        assert {k: job[k] for k in fields} == fields

    return check


SEEDED_ACTIVITIES = set(SynergistState().tables["activities"])


def new_synergist_activities(w: World) -> list[dict[str, Any]]:
    return [a for a in w.state("synergist").tables["activities"].values() if a["activityID"] not in SEEDED_ACTIVITIES]


def check_synergist_create(w: World, results: list[dict[str, Any]]) -> None:
    [activity] = new_synergist_activities(w)
    number = w.state("servicetrade").get("job", JOB_ID)["number"]
    assert (activity["activitySubject"], activity["activityClientCode"]) == (
        f"ServiceTrade job {number} completed",
        "1/C4126",
    )
    assert results[0]["activityID"] == activity["activityID"]


def check_synergist_update(w: World, results: list[dict[str, Any]]) -> None:
    [activity] = new_synergist_activities(w)
    assert (activity["activityDetails"], activity["activityRecordVersionNumber"]) == (
        "status: scheduled -> completed",
        2,
    )


def check_synergist_delete(w: World, results: list[dict[str, Any]]) -> None:
    assert new_synergist_activities(w) == []
    assert results[1] == {"activityID": results[0]["activityID"], "activityuuid": results[0]["activityuuid"]}


def check_synergist_job_create(w: World, results: list[dict[str, Any]]) -> None:
    job = w.state("synergist").get("jobs", results[0]["jobNumber"])
    assert (job["jobDescription"], job["jobClientCode"], job["jobStatus"]) == (
        w.state("servicetrade").get("job", JOB_ID)["description"],
        "1/C4126",
        1,
    )


def check_synergist_job_update(w: World, results: list[dict[str, Any]]) -> None:
    job = w.state("synergist").get("jobs", "1/00000510")
    assert (job["jobComments"], job["jobRecommendedVersionNumber"]) == (f"ServiceTrade job {JOB_ID} completed", 13)


def new_bookings(w: World) -> list[dict[str, Any]]:
    return [b for b in w.state("synergist").tables["calendar"].values() if b["calDiaryInternal"] != 56566]


def check_booking_create(w: World, results: list[dict[str, Any]]) -> None:
    [booking] = new_bookings(w)
    assert (booking["calIsoDateTimeStart"], booking["calResourceId"]) == ("2026-07-11T09:00:00", 54)


def check_booking_update(w: World, results: list[dict[str, Any]]) -> None:
    booking = w.state("synergist").get("calendar", 56566)
    assert (booking["calIsoDateTimeStart"], booking["calIsoDateTimeEnd"], booking["calAllDay"]) == (
        "2026-07-12T08:00:00",
        "2026-07-12T09:00:00",
        False,
    )


def check_booking_delete(w: World, results: list[dict[str, Any]]) -> None:
    assert new_bookings(w) == []
    assert results[1]["calDiaryInternal"] == results[0]["calDiaryInternal"]


def check_timesheet(w: World, results: list[dict[str, Any]]) -> None:
    entry = w.state("synergist").get("tspending", results[0]["tspEntryNo"])
    assert (entry["tspJobAndPhase"], entry["tspHoursNormal"], entry["tspWorkDone"]) == (
        "1/00000510.001",
        2,
        f"job {JOB_ID}",
    )


def check_comment(w: World, results: list[dict[str, Any]]) -> None:
    [comment] = w.state("servicetrade").all("comment")
    text, _, marker = comment["content"].partition("\n")
    assert (comment["entityId"], text, comment["visibility"]) == (JOB_ID, "Copied to Synchroteam", ["tech"])
    assert re.fullmatch(r"\[fieldrelay:[0-9a-f]{12}\]", marker)  # lets a retry after a crash find it


def check_job_update(w: World, results: list[dict[str, Any]]) -> None:
    assert w.state("servicetrade").get("job", JOB_ID)["customerPo"] == "SYNC-35769"


def check_appointment(w: World, results: list[dict[str, Any]]) -> None:
    [appointment] = [a for a in w.state("servicetrade").all("appointment") if a["id"] == results[0]["id"]]
    assert (appointment["jobId"], appointment["windowStart"], appointment["techIds"]) == (JOB_ID, 1_800_000_000, [6])


def check_job_create(w: World, results: list[dict[str, Any]]) -> None:
    job = w.state("servicetrade").get("job", results[0]["id"])
    assert (job["locationId"], job["type"], job["status"]) == (33, "repair", "new")


def check_appointment_update(w: World, results: list[dict[str, Any]]) -> None:
    appointment = w.state("servicetrade").get("appointment", results[0]["id"])
    assert (appointment["windowStart"], appointment["techIds"]) == (1_800_007_200, [6, 7])


def check_appointment_complete(w: World, results: list[dict[str, Any]]) -> None:
    # The job's currentAppointment: the open one just created, not the completed #757.
    assert results[1]["id"] == results[0]["id"]
    assert w.state("servicetrade").get("appointment", results[0]["id"])["status"] == "completed"


def check_service_request(w: World, results: list[dict[str, Any]]) -> None:
    service = w.state("servicetrade").get("servicerequest", 9902)
    assert service["status"] == "closed" and service["closedOn"]


def check_attachment(w: World, results: list[dict[str, Any]]) -> None:
    [attachment] = w.state("servicetrade").all("attachment")[-1:]
    assert (attachment["entityId"], attachment["fileName"], attachment["purposeId"]) == (JOB_ID, "report.txt", 1)
    assert w.state("servicetrade").contents[attachment["id"]] == f"Job {JOB_ID} report".encode()


def check_parts(w: World, results: list[dict[str, Any]]) -> None:
    job = w.state("synchroteam").find("job", {"myId": "ref-job05014"})
    assert job["parts"] == [{"reference": "1002", "quantity": 2}]


def check_report(w: World, results: list[dict[str, Any]]) -> None:
    assert results[0]["summary"] == (
        "Sample Block 1 / Item name 1: sample value (hey, this is a comment!) [Issue Reported]\n"
        "Sample Block 1 / Item name 2: In the street [Resolved]"
    )
    assert results[0]["photos"] == [{"fileName": "image.png", "comment": "a Comment", "iteration": 0}]


def check_lookup(w: World, results: list[dict[str, Any]]) -> None:
    assert results[0]["by_name"]["Standard Job"] == 629


def check_phases(w: World, results: list[dict[str, Any]]) -> None:
    assert results[0]["first"] == "1/00000510.001"


def check_unallocated(w: World, results: list[dict[str, Any]]) -> None:
    assert [e["calTimeSummaryInternal"] for e in results[0]["estimates"]] == [1005543]


def check_external_id(w: World, results: list[dict[str, Any]]) -> None:
    assert w.state("servicetrade").get("job", JOB_ID)["externalIds"] == {"synergist": f"A-{JOB_ID}"}
    assert results[-1] == {"entityType": "job", "entityId": JOB_ID, "systemName": "synergist", "value": f"A-{JOB_ID}"}


def check_http(w: World, results: list[dict[str, Any]]) -> None:
    [request] = w.log("hook")
    assert (request["method"], request["path"], request["json"]) == (
        "POST",
        "/hooks/done",
        {"job": JOB_ID, "status": "completed"},
    )
    assert request["headers"]["x-source"] == "fieldrelay"
    assert len(request["headers"]["idempotency-key"]) == 32
    assert results == [{"status": 200, "json": {"received": {"job": JOB_ID, "status": "completed"}}, "text": None}]


CASES: dict[str, tuple[str, Callable[[World, list[dict[str, Any]]], None]]] = {
    "synchroteam.customer.upsert": (rule(CUSTOMER), check_customer),
    "synchroteam.site.upsert": (
        rule(
            CUSTOMER
            + """
      - synchroteam.site.upsert:
          myId: "st-location-{{ entity.location.id }}"
          name: "{{ entity.location.name }}"
          addressCity: "{{ entity.location.address.city }}"
          customer: {myId: "{{ steps.customer.myId }}"}"""
        ),
        check_site,
    ),
    "synchroteam.equipment.upsert": (
        rule(
            CUSTOMER
            + """
      - synchroteam.equipment.upsert:
          myId: "st-job-{{ event.entity.id }}-hood"
          name: Hood
          customer: {myId: "{{ steps.customer.myId }}"}"""
        ),
        check_equipment,
    ),
    "synchroteam.job.upsert": (rule(JOB), check_job),
    "synchroteam.activity.upsert": (
        rule("""
      - synchroteam.activity.upsert:
          activityType: {id: 597}
          note: "ServiceTrade job {{ event.entity.id }}"
          dateStart: "2026-05-01 12:00"
          dateEnd: "2026-05-01 12:45"
          user: {id: 1551}"""),
        check_activity,
    ),
    "synchroteam.job.schedule": (
        rule(JOB + SCHEDULE),
        check_status("scheduled", scheduledStart="01/05/2026 08:00:00", technician={"id": 1551}),
    ),
    "synchroteam.job.unschedule": (
        rule(JOB + SCHEDULE + '\n      - synchroteam.job.unschedule: {myId: "{{ steps.job.myId }}"}'),
        check_status("scheduled", scheduledStart=None, technician=None),
    ),
    "synchroteam.job.cancel": (lifecycle("cancel"), check_status("cancelled")),
    "synchroteam.job.validate": (lifecycle("validate"), check_status("validated")),
    "synchroteam.job.confirm": (
        rule(
            JOB.replace("customer: {myId", "preferences: {isDraft: true}\n          customer: {myId") + "\n"
            '      - synchroteam.job.confirm: {myId: "{{ steps.job.myId }}"}'
        ),
        check_status("confirmed"),
    ),
    "synchroteam.job.complete": (
        lifecycle("complete", '\n          actualStart: "2026-05-01 08:00"\n          actualEnd: "2026-05-01 09:15"'),
        check_status("completed", actualEnd="01/05/2026 09:15:00", duration=75),
    ),
    "synergist.activity.create": (rule(SYNERGIST_ACTIVITY), check_synergist_create),
    "synergist.activity.update": (
        rule(
            SYNERGIST_ACTIVITY
            + """
      - synergist.activity.update:
          activityID: "{{ steps.activity.activityID }}"
          activityDetails: "status: {{ changes.status.old }} -> {{ changes.status.new }}\""""
        ),
        check_synergist_update,
    ),
    "synergist.activity.delete": (
        rule(
            SYNERGIST_ACTIVITY + '\n      - synergist.activity.delete: {activityID: "{{ steps.activity.activityID }}"}'
        ),
        check_synergist_delete,
    ),
    "synergist.job.create": (
        rule("""
      - synergist.job.create:
          varJobTemplate: "1/00100001"
          jobClientCode: "1/C4126"
          jobDescription: "{{ entity.description }}\""""),
        check_synergist_job_create,
    ),
    "synergist.job.update": (
        rule("""
      - synergist.job.update:
          jobNumber: "1/00000510"
          jobComments: "ServiceTrade job {{ event.entity.id }} completed\""""),
        check_synergist_job_update,
    ),
    "synergist.calendar.create": (rule(BOOKING), check_booking_create),
    "synergist.calendar.update": (
        rule("""
      - synergist.calendar.update:
          calDiaryInternal: 56566
          calIsoDateTimeStart: "2026-07-12T08:00:00"
          calIsoDateTimeEnd: "2026-07-12T09:00:00"
          calAllDay: "false"
          calResourceId: 54"""),
        check_booking_update,
    ),
    "synergist.calendar.delete": (
        rule(
            BOOKING
            + '\n      - synergist.calendar.delete: {diary_diaryinternal: "{{ steps.booking.calDiaryInternal }}"}'
        ),
        check_booking_delete,
    ),
    "synergist.timesheet.create": (
        rule("""
      - synergist.timesheet.create:
          tspJobAndPhase: "1/00000510.001"
          tspTimeDate: "2026-07-18"
          tspResourceCode: "1/USER"
          tspHoursNormal: 2
          tspWorkDone: "job {{ event.entity.id }}\""""),
        check_timesheet,
    ),
    "servicetrade.job.comment": (
        rule("""
      - servicetrade.job.comment:
          jobId: "{{ event.entity.id }}"
          content: Copied to Synchroteam
          visibility: [tech]"""),
        check_comment,
    ),
    "servicetrade.job.update": (
        rule("""
      - servicetrade.job.update:
          jobId: "{{ event.entity.id }}"
          customerPo: "SYNC-{{ event.entity.id }}\""""),
        check_job_update,
    ),
    "servicetrade.appointment.create": (
        rule("""
      - servicetrade.appointment.create:
          jobId: "{{ event.entity.id }}"
          windowStart: 1800000000
          windowEnd: 1800003600
          techIds: [6]"""),
        check_appointment,
    ),
    "servicetrade.job.create": (
        rule("""
      - servicetrade.job.create:
          locationId: 33
          type: repair
          description: "Follow-up of job {{ event.entity.id }}\""""),
        check_job_create,
    ),
    "servicetrade.appointment.update": (
        rule("""
      - id: appt
        servicetrade.appointment.create:
          {jobId: "{{ event.entity.id }}", windowStart: 1800000000, windowEnd: 1800003600}
      - servicetrade.appointment.update:
          appointmentId: "{{ steps.appt.id }}"
          windowStart: 1800007200
          windowEnd: 1800010800
          techIds: [6, 7]"""),
        check_appointment_update,
    ),
    "servicetrade.appointment.complete": (
        rule("""
      - servicetrade.appointment.create:
          {jobId: "{{ event.entity.id }}", windowStart: 1800000000, windowEnd: 1800003600}
      - servicetrade.appointment.complete: {jobId: "{{ event.entity.id }}"}"""),
        check_appointment_complete,
    ),
    "servicetrade.servicerequest.update": (
        rule("""
      - servicetrade.servicerequest.update: {serviceRequestId: 9902, status: closed}"""),
        check_service_request,
    ),
    "servicetrade.attachment.upload": (
        rule("""
      - servicetrade.attachment.upload:
          entityId: "{{ event.entity.id }}"
          fileName: report.txt
          contentType: text/plain
          content: "Job {{ event.entity.id }} report\""""),
        check_attachment,
    ),
    "synchroteam.job.parts": (
        rule("""
      - synchroteam.job.parts: {myId: ref-job05014, parts: [{reference: "1002", quantity: 2}]}"""),
        check_parts,
    ),
    "synchroteam.job.report": (
        rule("""
      - synchroteam.job.report: {myId: ref-job05014}"""),
        check_report,
    ),
    "synchroteam.lookup": (
        rule("""
      - synchroteam.lookup: {kind: jobtype}"""),
        check_lookup,
    ),
    "synergist.phase.list": (
        rule("""
      - synergist.phase.list: {job: "1/00000510"}"""),
        check_phases,
    ),
    "synergist.calendar.unallocated": (
        rule("""
      - synergist.calendar.unallocated: {client: "1/C4126"}"""),
        check_unallocated,
    ),
    "servicetrade.externalid.set": (
        rule("""
      - servicetrade.externalid.set:
          entityType: job
          entityId: "{{ event.entity.id }}"
          systemName: synergist
          value: "A-{{ event.entity.id }}\""""),
        check_external_id,
    ),
    "http.request": (
        rule("""
      - http.request:
          url: "HOOK_URL/hooks/done"
          headers: {X-Source: fieldrelay}
          json: {job: "{{ event.entity.id }}", status: "{{ changes.status.new }}"}"""),
        check_http,
    ),
}


def test_every_registered_action_has_a_case():
    assert sorted(CASES) == sorted(ACTIONS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_action_runs_through_a_rule_against_its_sandbox(world: World, name: str):
    text, check = CASES[name]
    rt = world.runtime(text)
    event = job_completed()

    results = world.deliver(rt, event)

    steps = [s for s in rt.state.load_trace(event.id) if s["step"] == "action.succeeded"]
    assert [s["action"] for s in steps][-1] == name
    check(world, results)


# Idempotency: an action run twice has the effect of one


def clear_ledger(w: World) -> int:
    """Forget which actions were done, as if each task died after its call and before the ledger write."""
    # A step's ledger entry (its result by index) and its result by step id are one write: a task that died
    # before it left neither. Returns how many steps were forgotten.
    state, steps = PipelineState(w.redis), 0
    for key in w.redis.scan_iter("fieldrelay:evsum:*"):
        names = [f.decode() if isinstance(f, bytes) else f for f in w.redis.hkeys(key)]
        steps += len([name for name in names if re.fullmatch(r"r:\w+:\d+", name)])
        state.forget_results(key.decode().rsplit(":", 1)[1])
    return steps


def redeliver(w: World, rt: Runtime, event: ChangeEvent) -> list[dict[str, Any]]:
    """Celery redelivers every action task of `event` (acks_late after a crash): run them all again."""
    tasks = [(e, d, i) for e, d, i in w.ran if e == event.id]
    results = [pipeline.run_action(e, d, i, rt) for e, d, i in tasks]
    w.enqueued.clear()  # the chain re-enqueues steps that were all redelivered anyway
    return results


CHAIN = rule(
    CUSTOMER
    + """
      - id: site
        synchroteam.site.upsert:
          myId: "st-location-{{ entity.location.id }}"
          name: "{{ entity.location.name }}"
          customer: {myId: "{{ steps.customer.myId }}"}
      - id: job
        synchroteam.job.upsert:
          myId: "st-job-{{ event.entity.id }}"
          description: "{{ entity.name }}"
          customer: {myId: "{{ steps.customer.myId }}"}
      - synergist.activity.create:
          activityActivitytypeCode: Notes
          activityClientCode: "1/C4126"
          activitySubject: "ServiceTrade job {{ entity.number }} ({{ event.occurred_at }})\""""
)


def test_redelivery_with_the_ledger_cleared_and_a_second_event_leave_one_record_each(world: World):
    rt = world.runtime(CHAIN)
    first = job_completed(1_790_000_000)
    created = world.deliver(rt, first)
    assert clear_ledger(world) == 4

    redelivered = redeliver(world, rt, first)
    later = world.deliver(rt, job_completed(1_790_000_060), task_id="task-2")

    sy = world.state("synchroteam")
    assert [c["id"] for c in sy.active("customer") if c["myId"] == "st-company-39"] == [created[0]["id"]]
    assert [s["id"] for s in sy.active("site") if s["myId"] == "st-location-33"] == [created[1]["id"]]
    assert [j["id"] for j in sy.active("job") if j["myId"] == f"st-job-{JOB_ID}"] == [created[2]["id"]]
    # Upserts by myId legitimately repeat the send; they change nothing but the record's modified time.
    sends = [r["path"] for r in world.log("synchroteam") if r["path"].endswith("/send")]
    assert sends == ["/api/v3/customer/send", "/api/v3/site/send", "/api/v3/job/send"] * 3
    [activity] = new_synergist_activities(world)
    assert activity["activityID"] == created[3]["activityID"]
    assert [r[3]["activityID"] for r in (redelivered, later)] == [activity["activityID"]] * 2
    # The link store turned both repeats into updates: version 1 (create) + 2 updates, latest subject kept.
    assert activity["activityRecordVersionNumber"] == 3
    number = world.state("servicetrade").get("job", JOB_ID)["number"]
    assert activity["activitySubject"] == f"ServiceTrade job {number} (1790000060)"
    actions = [r["query"].get("action") for r in world.log("synergist") if r["query"].get("action")]
    assert actions == ["create", "update", "update"]


def test_a_redelivered_task_with_the_ledger_intact_calls_nothing_again(world: World):
    rt = world.runtime(CHAIN)
    event = job_completed()
    world.deliver(rt, event)
    before = (len(world.log("synchroteam")), len(world.log("synergist")))

    redeliver(world, rt, event)

    assert (len(world.log("synchroteam")), len(world.log("synergist"))) == before


def test_http_request_sends_the_same_idempotency_key_on_a_retry_and_a_new_one_per_event(world: World):
    rt = world.runtime(CASES["http.request"][0])
    hook = world.runner.apps["hook"].state.faults
    hook.add(Fault(status=503, count=1, path_prefix="/hooks"))
    first = job_completed(1_790_000_000)
    pipeline.process_event(first, "task-1", rt)
    [(event_id, digest, index, _)] = world.enqueued
    with pytest.raises(OutboundUnavailable) as failed:
        pipeline.run_action(event_id, digest, index, rt)
    assert failed.value.status == 503
    world.drain(rt)  # Celery's retry of the same task
    world.deliver(rt, job_completed(1_790_000_060), task_id="task-2")

    keys = [r["headers"]["idempotency-key"] for r in world.log("hook")]
    assert [r["status"] for r in world.log("hook")] == [503, 200, 200]
    assert keys[0] == keys[1]
    assert keys[2] != keys[0]
