"""Synergist sandbox divergences from seed 001, fixed: errors in the three forms, texts a client cannot match,
views modelled and unknown ones refused; and the phases and unallocated lists it now serves."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from sandbox import synergist
from sandbox.synergist_store import SynergistState
from tests.sandbox.test_synergist import AUTH, call

OLD_REGEXES = (
    re.compile(r"not found|does not exist|no record|invalid (activity|job|diary)", re.I),
    re.compile(r"record ?version|version ?number|another user|(modified|changed|updated) by", re.I),
)


@pytest.mark.parametrize(("form", "status"), [("xml", 404), ("json404", 404), ("json200", 200)])
def test_errors_come_in_the_configured_form(form: str, status: int) -> None:
    """Seed 001, "JSON Response": an error is "Success false" with Errormessage/Errorcode; "In case of any
    error, the Synergist server will return an HTTP 404 error together with an XML structure". Old: only
    404 + JSON, a form the doc never shows."""
    client = TestClient(synergist.create_app(SynergistState(), error_form=form))
    response = call(client, "activities", "update", [{"activityID": 6712, "activityRecordVersionNumber": 1}])
    assert response.status_code == status
    if form == "xml":
        assert response.headers["content-type"].startswith("text/xml")
        assert re.search(r'<Error ErrorID="4040\d\d">\s*<ErrorText>[^<]+</ErrorText>', response.text)
    else:
        body = response.json()
        assert body["success"] is False and 404000 <= body["errorcode"] <= 404999


def test_the_error_form_can_change_at_run_time(syn_client: TestClient) -> None:
    assert syn_client.put("/_sandbox/errors", json={"form": "json200"}).json() == {"form": "json200"}
    assert call(syn_client, "activities", activityid=1, modelstructure="activitydetails").status_code == 200
    assert syn_client.put("/_sandbox/errors", json={"form": "yaml"}).status_code == 400


def test_stale_version_and_missing_record_texts_are_no_regex_bait(syn_client: TestClient) -> None:
    """Seed 001, "Error codes": only 404001-404004 have texts. Old: "updated by another user" and "... not
    found", exactly what the connector's regexes looked for."""
    stale = call(syn_client, "activities", "update", [{"activityID": 6712, "activityRecordVersionNumber": 1}]).json()
    missing = call(syn_client, "activities", "delete", [{"activityID": 999999}]).json()
    for body in (stale, missing):
        assert not any(r.search(body["errormessage"]) for r in OLD_REGEXES), body["errormessage"]


def test_views_are_modelled_and_unknown_ones_refused(syn_client: TestClient) -> None:
    """Seed 001, "Table of views": a view is a saved query, -1703 "My open activities"; "If no 'view'
    parameter is passed all records for the synergist company are returned". Old: any view was ignored."""
    everything = call(syn_client, "activities", style="modeldata", modelstructure="activitylist").json()["data"]
    mine = call(syn_client, "activities", style="modeldata", modelstructure="activitylist", view="-1703").json()
    assert {a["activityOwnerID"] for a in mine["data"]} <= {54}
    assert all(not a["activityCompleted"] for a in mine["data"])
    assert len(mine["data"]) <= len(everything)
    unknown = call(syn_client, "activities", style="modeldata", modelstructure="activitylist", view="-9999")
    assert unknown.status_code == 404 and unknown.json()["success"] is False
    assert 404000 <= unknown.json()["errorcode"] <= 404999


def test_phases_and_unallocated_estimates(syn_client: TestClient) -> None:
    """Seed 001, "Phases" (phaseslist) and calendar "Unallocated list" (action=unallocated; the sample names
    the booking key calTimeSummarySelect)."""
    phases = call(syn_client, "phases", style="modeldata", modelstructure="phaseslist", job="1/00000510").json()
    assert [p["phaseJobAndPhase"] for p in phases["data"]] == ["1/00000510.001"]
    query = {**AUTH, "action": "unallocated", "client": "1/C4126"}
    estimates = syn_client.get("/jsonapi/calendar.json", params=query).json()["data"]
    assert [e["calTimeSummarySelect"] for e in estimates] == [1005543]
