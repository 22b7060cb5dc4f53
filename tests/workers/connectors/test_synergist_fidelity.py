"""Synergist readings fixed against seed 001: three error forms by code and status, stale writes told by
re-reading the version, the `on_conflict` policy, no default views, phases and the unallocated list."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.workers.connectors.test_synergist import fail, make_client, ok, xml_error
from workers.connectors.synergist import SynergistConflict, SynergistNotFound, SynergistRejected
from workers.polling.config import PollerSpec
from workers.polling.sources import SynergistSource

FORMS = {
    "404+xml": lambda code, text: xml_error(code, text),
    "404+json": lambda code, text: fail(code, text, status=404),
    "200+success:false": lambda code, text: fail(code, text),
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("text", ["Activity 99 not found", "record updated by another user", "Vorgang fehlgeschlagen"])
def test_every_undocumented_text_is_a_plain_refusal_in_all_three_forms(form: str, text: str) -> None:
    """Seed 001, "JSON Response": "Success false" with Errormessage/Errorcode, and "In case of any error, the
    Synergist server will return an HTTP 404 error together with an XML structure"; "Error codes": only
    404001-404004 have texts, "You may also receive an error code within the range of 404000 and 404999".
    Old: a regex on the text made "not found" NotFound and "another user" a conflict."""
    client = make_client(lambda r: FORMS[form](404517, text))
    with pytest.raises(SynergistRejected) as info:
        client.call("activities", "update", input={"data": []})
    assert type(info.value) is SynergistRejected
    assert info.value.detail == f"404517: {text}"


def test_a_missing_activity_is_told_by_an_empty_key_field_listing_not_by_the_text() -> None:
    """Seed 001, "Key field filters": `Activityid=` filters a list. A refused details read is followed by
    that listing: empty means not found. Old: "not found" in the error text decided it."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        p = request.url.params
        seen.append(p.get("modelstructure", ""))
        if p.get("modelstructure") == "activitydetails":
            return fail(404500, "Kein Datensatz")
        return ok()

    with pytest.raises(SynergistNotFound):
        make_client(handler).activity(99)
    assert seen == ["activitydetails", "activitylist"]


def conflicting(current: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """A server at version 8 with `current` fields; version 7 (ours) is stale."""
    writes: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("action") == "update":
            record = json.loads(request.url.params["input"])["data"][0]
            writes.append(record)
            if record["activityRecordVersionNumber"] != 8:
                return fail(404500, "Speichern nicht möglich")
            return ok({"activityID": 1, "activityRecordVersionNumber": 9})
        return ok({"activityID": 1, "activityRecordVersionNumber": 8, **current})

    return handler, writes


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("keep_theirs", {"activityDetails": "ours"}),
        ("overwrite", {"activitySubject": "ours", "activityDetails": "ours"}),
    ],
)
def test_a_stale_write_rewrites_only_the_rule_fields_and_follows_the_policy(policy: str, expected: dict) -> None:
    """Seed 001, "Update an activity": activityRecordVersionNumber "must be passed back when doing an update.
    If the record has been updated by another user in the meantime, the update will fail." Old: the version
    was re-read and every field written again, overwriting the person's edit to the same field."""
    # We last wrote subject "old" and details "old"; a person since changed the subject (and another field).
    handler, writes = conflicting({"activitySubject": "theirs", "activityDetails": "old", "activityStatus": "x"})
    fields = {"activitySubject": "ours", "activityDetails": "ours"}
    base = {"activitySubject": "old", "activityDetails": "old"}
    result = make_client(handler).update_activity(1, fields, version=7, base=base, on_conflict=policy)  # type: ignore[arg-type]
    assert {
        k: v for k, v in writes[-1].items() if k.startswith("activity") and "ID" not in k and "Version" not in k
    } == expected
    assert "activityStatus" not in writes[-1]  # never a field the rule did not set
    assert result["conflict"]["fields"] == ["activitySubject"] and result["conflict"]["policy"] == policy
    assert result["activityRecordVersionNumber"] == 9


def test_on_conflict_fail_raises_a_typed_conflict_naming_the_fields() -> None:
    """Seed 001, "Update an activity" (as above): with `on_conflict: fail` a person's edit is never lost."""
    handler, writes = conflicting({"activitySubject": "theirs"})
    with pytest.raises(SynergistConflict, match="activitySubject"):
        make_client(handler).update_activity(
            1, {"activitySubject": "ours"}, version=7, base={"activitySubject": "old"}, on_conflict="fail"
        )
    assert len(writes) == 1


def test_pollers_send_no_view_unless_one_is_configured() -> None:
    """Seed 001, "Activity list": "If no 'view' parameter is passed all records for the synergist company are
    returned"; "Table of views": a view is a saved query (-1703 "My open activities"). Old: `view=-1700`."""
    asked: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(dict(request.url.params))
        return ok()

    client = make_client(handler)
    list(SynergistSource(client, PollerSpec("synergist", "activity")).fetch(0, True))
    list(SynergistSource(client, PollerSpec("synergist", "job", options={"view": "-1303"})).fetch(0, True))
    assert "view" not in asked[0] and asked[1]["view"] == "-1303"


def test_phases_and_the_unallocated_list() -> None:
    """Seed 001, "Phases" (`modelstructure=phaseslist`, key field `Job=`) and calendar "Unallocated list"
    (`action=unallocated`; [INCONS] the sample row says calTimeSummarySelect, a booking needs
    calTimeSummaryInternal)."""
    asked: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(dict(request.url.params))
        if request.url.path.endswith("/calendar.json"):
            return ok({"calTimeSummarySelect": 1005543, "calJobPhaseSelect": "1/00010481.H01"})
        return ok({"phaseJobAndPhase": "1/00000519.001"})

    client = make_client(handler)
    assert [p["phaseJobAndPhase"] for p in client.iter_phases("1/00000519")] == ["1/00000519.001"]
    assert client.unallocated()[0]["calTimeSummaryInternal"] == 1005543
    assert asked[0]["modelstructure"] == "phaseslist" and asked[0]["Job"] == "1/00000519"
    assert asked[-1]["action"] == "unallocated"
