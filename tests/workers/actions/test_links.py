"""Linked records: `on_missing` when a linked record was deleted in the target, `linked_id` reading links,
and the ServiceTrade external id action."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import httpx
import pytest

from rules import TemplateError, load_rules
from rules.context import LinkQuery
from tests.workers.actions.conftest import FakeApis
from tests.workers.actions.test_synergist import envelope, run
from workers.actions.context import ActionContext, LinkedRecordMissing, MemoryLinkStore
from workers.actions.registry import action_params
from workers.clients import SettingsClients
from workers.links import LINK_KINDS, LinkReader

KEY = "servicetrade:job:35769:completed-job-to-synergist-activity:synergist.activity.create#0"
LINK = f"synergist.activity.create:{KEY}"
CREATE = {"activityActivitytypeCode": "SVC", "activityClientCode": "1/F667", "activitySubject": "done"}


def synergist_without_6743(request: httpx.Request) -> httpx.Response:
    """Activity 6743 was deleted in Synergist; creating gives 6800."""
    action = request.url.params.get("action")
    if action is None:
        return envelope()  # the details read finds nothing
    return envelope({"activityID": 6800, "activityRecordVersionNumber": 1})


@pytest.mark.parametrize("policy", ["fail", "recreate"])
def test_a_linked_record_deleted_in_the_target(apis: FakeApis, clients: SettingsClients, policy: str):
    apis.responder = synergist_without_6743
    store = MemoryLinkStore()
    store.set(LINK, "6743")
    ctx = ActionContext("ev1", "completed-job-to-synergist-activity", 0, KEY, store, policy)
    if policy == "fail":
        with pytest.raises(LinkedRecordMissing) as gone:
            run("synergist.activity.create", CREATE, clients, ctx)
        assert str(gone.value) == (
            f"the synergist.activity 6743 that this step created earlier (link {LINK}) no longer exists in "
            "synergist; nothing was written. With `on_missing: recreate` on the step, the next run creates a "
            "new one and links it instead"
        )
        assert pickle.loads(pickle.dumps(gone.value)).record_id == "6743"  # it crosses Celery
        assert store.get(LINK) == "6743"
        assert [r.url.params.get("action") for r in apis.requests] == [None]
    else:
        assert run("synergist.activity.create", CREATE, clients, ctx)["activityID"] == 6800
        assert store.get(LINK) == "6800"
        assert [r.url.params.get("action") for r in apis.requests] == [None, "create"]


def test_a_linked_appointment_deleted_in_servicetrade_is_created_again(apis: FakeApis, clients: SettingsClients):
    def servicetrade(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/auth":
            return httpx.Response(200, json={"data": {"authToken": "t"}})
        if request.method == "PUT":
            return httpx.Response(404, json={"messages": {"error": ["appointment 9 not found"]}})
        return httpx.Response(200, json={"data": {"id": 10, "jobId": 35769}})

    apis.responder = servicetrade
    store = MemoryLinkStore()
    link = "servicetrade.appointment.create:servicetrade:job:35769:r:s"
    store.set(link, "9")
    ctx = ActionContext("ev1", "r", 0, "servicetrade:job:35769:r:s", store, "recreate")
    assert run("servicetrade.appointment.create", {"jobId": 35769}, clients, ctx)["id"] == 10
    assert store.get(link) == "10"


def test_the_external_id_action_sets_the_value(apis: FakeApis, clients: SettingsClients):
    def servicetrade(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/auth":
            return httpx.Response(200, json={"data": {"authToken": "t"}})
        return httpx.Response(200, json={"data": {"value": json.loads(request.content)["value"]}})

    apis.responder = servicetrade
    params = {"entityType": "job", "entityId": 35769, "systemName": "synergist", "value": "6743"}
    result = run("servicetrade.externalid.set", params, clients, ActionContext("e", "r", 0, "k"))
    assert result == params
    assert (apis.requests[-1].method, apis.requests[-1].url.path) == ("POST", "/api/externalid/job/35769/synergist")
    with pytest.raises(ValueError, match="entityType"):
        run(
            "servicetrade.externalid.set", {**params, "entityType": "invoice"}, clients, ActionContext("e", "r", 0, "k")
        )


RULES = """
rules:
  - name: completed-job-to-synergist-activity
    when: {source: servicetrade, entity: job}
    then:
      - synergist.activity.create: {activityActivitytypeCode: SVC, activityClientCode: 1/F667}
      - id: second
        synergist.activity.create: {activityActivitytypeCode: SVC, activityClientCode: 1/F668}
  - name: no-links
    when: {source: servicetrade, entity: job}
    then:
      - servicetrade.job.comment: {jobId: 1, content: x}
"""


def query(kind: str = "synergist.activity", rule: str = "completed-job-to-synergist-activity", step=None, **entity):
    return LinkQuery(kind, rule, step, "servicetrade", entity.get("type", "job"), entity.get("id", 35769))


def test_linked_id_reads_the_link_an_earlier_rule_kept(tmp_path: Path):
    (tmp_path / "r.yaml").write_text(RULES)
    ruleset = load_rules(tmp_path, action_params())
    store = MemoryLinkStore()
    reader = LinkReader(lambda: ruleset, lambda keys: [store.get(k) for k in keys])
    assert reader(query()) is None  # nothing created yet
    store.set(LINK, "6743")
    assert reader(query()) == 6743
    assert reader(query(id=35770)) is None  # another job's activity is not this one's
    store.set(f"synergist.activity.create:{KEY.rsplit(':', 1)[0]}:second", "6744")
    with pytest.raises(TemplateError, match=r"linked 2 synergist.activity records .* name one with step="):
        reader(query())
    assert reader(query(step="second")) == 6744
    assert reader(query(step="synergist.activity.create#0")) == 6743
    assert "synergist.activity" in LINK_KINDS and "servicetrade.appointment" in LINK_KINDS


@pytest.mark.parametrize(
    ("asked", "message"),
    [
        (query(kind="synergist.activty"), "'synergist.activty' is no kind of record fieldrelay links; did you mean"),
        (
            query(rule="completed-job-to-synergist"),
            "no rule named 'completed-job-to-synergist' is loaded; did you mean",
        ),
        (query(rule="no-links"), "rule 'no-links' has no step that creates a synergist.activity"),
        (
            query(step="third"),
            "has no synergist.activity step 'third' (its steps: synergist.activity.create#0, second)",
        ),
    ],
)
def test_linked_id_refuses_what_names_no_link(tmp_path: Path, asked: LinkQuery, message: str):
    (tmp_path / "r.yaml").write_text(RULES)
    ruleset = load_rules(tmp_path, action_params())
    with pytest.raises(TemplateError) as refused:
        LinkReader(lambda: ruleset, lambda keys: [None] * len(keys))(asked)
    assert message in str(refused.value)
