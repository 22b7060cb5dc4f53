"""`when` and `if`: each feature matches and fails to match, with the reason ops will read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fieldrelay.entitystate import EntityVersion
from rules.engine import evaluate_rules
from tests.rules.conftest import job_record


@pytest.fixture
def verdict(load, make_event):
    """verdict(when, if_=None, record=None, env=None, **event) -> (matched, reason) for one rule."""

    def run(when: str, if_: str | None = None, record=None, env=None, previous=None, **event):
        text = f"rules:\n  - name: r\n    when: {when}\n"
        if if_ is not None:
            text += f"    if: {if_}\n"
        text += "    then: [{http.request: {url: 'https://example.com'}}]\n"
        ruleset = load(text)
        (result,) = evaluate_rules(
            ruleset.rules,
            make_event(**event),
            lambda: record,
            env=env,
            now=datetime(2024, 5, 1, 12, tzinfo=UTC),
            previous=None if previous is None else EntityVersion(previous),
        )
        return result.matched, result.reason

    return run


ST = "{source: servicetrade"


def test_source(verdict):
    assert verdict(ST + "}") == (True, "matched")
    assert verdict("{source: synchroteam}") == (False, "when.source: wanted 'synchroteam', event had 'servicetrade'")


def test_via(verdict):
    assert verdict(ST + ", via: webhook}")[0] is True
    assert verdict(ST + ", via: any}", via="poll")[0] is True
    assert verdict(ST + ", via: webhook}", via="poll") == (False, "when.via: wanted 'webhook', event had 'poll'")


def test_entity_one_or_list(verdict):
    assert verdict(ST + ", entity: job}")[0] is True
    assert verdict(ST + ", entity: [invoice, job]}")[0] is True
    assert verdict(ST + ", entity: invoice}") == (False, "when.entity: wanted 'invoice', event had 'job'")
    assert verdict(ST + ", entity: [invoice, quote]}") == (
        False,
        "when.entity: wanted one of 'invoice', 'quote', event had 'job'",
    )


def test_entity_spelling_variants_match_each_other(verdict):
    assert verdict(ST + ", entity: job_item}", entity="jobitem")[0] is True
    assert verdict(ST + ", entity: clockevent}", entity="clock_event")[0] is True


def test_action_one_list_or_any(verdict):
    assert verdict(ST + ", action: updated}")[0] is True
    assert verdict(ST + ", action: [created, deleted]}", action="deleted")[0] is True
    assert verdict(ST + "}", action="deleted")[0] is True
    assert verdict(ST + ", action: created}") == (False, "when.action: wanted 'created', event had 'updated'")


STATUS = {"status": ("scheduled", "completed")}


@pytest.mark.parametrize(
    ("changed", "matched", "reason"),
    [
        ("{status: {to: completed}}", True, "matched"),
        ("{status: {to: canceled}}", False, "when.changed.status.to: wanted 'canceled', event had 'completed'"),
        ("{status: {to: [closed, completed]}}", True, "matched"),
        ("{status: {from: scheduled}}", True, "matched"),
        ("{status: {from: new}}", False, "when.changed.status.from: wanted 'new', event had 'scheduled'"),
        ("{status: {not_from: new}}", True, "matched"),
        (
            "{status: {not_from: scheduled}}",
            False,
            "when.changed.status.not_from: wanted anything but 'scheduled', event had 'scheduled'",
        ),
        ("{status: {not_to: canceled}}", True, "matched"),
        (
            "{status: {not_to: [canceled, completed]}}",
            False,
            "when.changed.status.not_to: wanted anything but one of 'canceled', 'completed', event had 'completed'",
        ),
        ("{status: {from: scheduled, to: completed}}", True, "matched"),
        ("{status: true}", True, "matched"),
        ("{status: {}}", True, "matched"),
        (
            "{type: true}",
            False,
            "when.changed.type: not in the event's changeset, and the entity could not be loaded",
        ),
    ],
)
def test_changed_against_the_changeset(verdict, changed, matched, reason):
    assert verdict(ST + f", changed: {changed}}}", changes=STATUS) == (matched, reason)


def test_a_polls_changeset_lists_every_change_so_a_field_missing_from_it_did_not_change(verdict):
    assert verdict(ST + ", changed: {type: true}}", changes=STATUS, via="poll") == (
        False,
        "when.changed.type: the event did not change 'type' (changed: status)",
    )
    source = {"source": ({"status": "ordered", "value": 1}, {"status": "ordered", "value": 2})}
    assert verdict(ST + ", changed: {source.status: true}}", changes=source, via="poll") == (
        False,
        "when.changed.source.status: the event changed 'source' but not 'source.status'",
    )
    assert verdict(ST + ", changed: {source.value: {from: 1, to: 2}}}", changes=source, via="poll")[0] is True


def test_an_empty_changeset_compares_the_record_with_the_version_seen_before(verdict):
    when = ST + ", changed: {status: {from: scheduled, to: completed}}}"
    now = job_record(status="completed")
    assert verdict(when, changes={}, record=now, previous={"status": "scheduled"}) == (True, "matched")
    assert verdict(when, changes={}, record=now, previous={"status": "completed"}) == (
        False,
        "when.changed.status: 'status' did not change since the version fieldrelay saw last (still 'completed')",
    )
    assert verdict(when, changes={}, record=now, previous={"status": "new"}) == (
        False,
        "when.changed.status.from: wanted 'scheduled', the version seen last had 'new'",
    )
    assert verdict(when, changes={}, record=None, previous={"status": "new"}) == (
        False,
        "when.changed.status: the event's changeset was empty, and the entity could not be loaded",
    )


def test_an_untracked_field_is_compared_even_when_the_changeset_lists_others(verdict):
    when = ST + ", changed: {status: {to: completed}, description: true}}"
    now = job_record(status="completed", description="new text")
    assert verdict(when, changes=STATUS, record=now, previous={"description": "old text"}) == (True, "matched")
    assert verdict(when, changes=STATUS, record=now, previous={"description": "new text"})[0] is False


def test_changed_dotted_field_and_loose_equality(verdict):
    changes = {"source.status": ("ordered", "delivered"), "quantity": (4, "5")}
    assert verdict(ST + ", changed: {source.status: {to: delivered}}}", changes=changes)[0] is True
    assert verdict(ST + ", changed: {quantity: {from: '4', to: 5}}}", changes=changes)[0] is True


def test_without_an_earlier_version_to_is_judged_on_the_current_value(verdict):
    when = ST + ", changed: {status: {to: completed}}}"
    assert verdict(when, record=job_record(status="completed")) == (True, "matched")
    assert verdict(when, record=job_record(status="scheduled")) == (
        False,
        "when.changed.status.to: wanted 'completed', the record has 'scheduled'",
    )
    assert verdict(when, record=None) == (
        False,
        "when.changed.status: the event carried no changeset, and the entity could not be loaded",
    )
    assert verdict(ST + ", changed: {nope: {not_to: x}}}", record=job_record()) == (
        False,
        "when.changed.nope: the event carried no changeset, and the entity has no field 'nope'",
    )


def test_once_the_value_is_known_an_unrelated_update_does_not_match_to_again(verdict):
    when = ST + ", changed: {status: {to: completed}}}"
    assert verdict(when, record=job_record(status="completed"), previous={"status": "completed"}) == (
        False,
        "when.changed.status: 'status' did not change since the version fieldrelay saw last (still 'completed')",
    )


def test_without_an_earlier_version_from_and_any_change_do_not_match(verdict):
    assert verdict(ST + ", changed: {status: {from: scheduled, to: completed}}}", record=job_record()) == (
        False,
        "when.changed.status: no earlier version known (fieldrelay has no earlier value of 'status' for this "
        "record), so 'from' cannot be checked",
    )
    assert verdict(ST + ", changed: {status: true}}", record=job_record(), previous={"type": "repair"}) == (
        False,
        "when.changed.status: no earlier version known (fieldrelay has no earlier value of 'status' for this "
        "record), so any change cannot be checked",
    )


def test_no_changeset_dotted_fallback(verdict):
    entity = {"source": {"status": "delivered"}}
    assert verdict(ST + ", changed: {source.status: {to: delivered}}}", record=entity)[0] is True


ENTITY = job_record(status="scheduled", type="repair")


@pytest.mark.parametrize(
    ("if_", "matched", "reason"),
    [
        ("\"entity.type == 'repair'\"", True, "matched"),
        (
            "\"entity.status == 'completed'\"",
            False,
            "if: entity.status == 'completed' is false; entity.status was 'scheduled'",
        ),
        ("\"entity.type in ['repair', 'inspection']\"", True, "matched"),
        (
            '["entity.type == \'repair\'", "entity.status == \'completed\'", "true"]',
            False,
            "if (item 2 of 3): entity.status == 'completed' is false; entity.status was 'scheduled'",
        ),
        ('{all: ["entity.type == \'repair\'", "entity.number > 5"]}', True, "matched"),
        (
            '{all: ["entity.type == \'repair\'", "entity.number < 5"]}',
            False,
            "if.all (item 2 of 2): entity.number < 5 is false; entity.number was 112233",
        ),
        ("{any: [\"entity.type == 'x'\", \"entity.type == 'repair'\"]}", True, "matched"),
        (
            '{any: ["entity.type == \'x\'", "not entity.customer"]}',
            False,
            "if.any: none of 2 held; if.any (item 1 of 2): entity.type == 'x' is false; entity.type was 'repair'; "
            "if.any (item 2 of 2): not entity.customer is false",
        ),
        ("{not: \"entity.type == 'x'\"}", True, "matched"),
        ("{not: \"entity.type == 'repair'\"}", False, "if.not: the inner condition held"),
        ('[{any: ["false", {not: "false"}]}, "entity.customer.id == 39"]', True, "matched"),
    ],
)
def test_if_forms(verdict, if_, matched, reason):
    assert verdict(ST + "}", if_=if_, record=ENTITY) == (matched, reason)


def test_if_expression_error_is_a_reason_not_an_exception(verdict):
    matched, reason = verdict(ST + "}", if_='"entity.customer.idd == 39"', record=ENTITY)
    assert not matched
    assert reason == ("if: entity.customer.idd == 39: no field 'idd' (fields here: externalIds, id, name)")
    matched, reason = verdict(ST + "}", if_='"1 / 0"', record=ENTITY)
    assert (matched, reason) == (False, "if: 1 / 0: ZeroDivisionError: division by zero")


def test_if_when_the_entity_is_missing(verdict):
    assert verdict(ST + "}", if_="\"entity.type == 'repair'\"", record=None)[1] == (
        "if: entity.type == 'repair': the entity could not be loaded, so it has no field 'type'"
    )


def test_if_sees_event_changes_vars_env_and_now(load, make_event):
    text = (
        "vars: {team: north}\nrules:\n  - name: r\n    when: {source: servicetrade}\n    if:\n"
        "      - \"event.entity.id == 35769 and event.action == 'updated'\"\n"
        "      - \"event.source == 'servicetrade' and event.id | length == 24\"\n"
        "      - \"changes.status.new == 'completed' and event.changes.status.old == 'scheduled'\"\n"
        "      - \"vars.team == 'north'\"\n"
        "      - \"env.REGION == 'us'\"\n"
        "      - \"now.year == 2024 and tz(now, 'America/New_York').hour == 8\"\n"
        '      - "(1401833052 | fromtimestamp).year == 2014"\n'
        "    then: [{http.request: {url: x}}]\n"
    )
    ruleset = load(text)
    event = make_event(changes=STATUS)
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    (ok,) = evaluate_rules(ruleset.rules, event, lambda: None, now=now, env={"REGION": "us"})
    assert (ok.matched, ok.reason) == (True, "matched")
    (bad,) = evaluate_rules(ruleset.rules, event, lambda: None, now=now, env={"REGION": "eu-secret"})
    assert bad.reason == "if (item 5 of 7): env.REGION == 'us' is false; env.REGION was (hidden: reads env)"
    assert "eu-secret" not in bad.reason
    (missing,) = evaluate_rules(ruleset.rules, event, lambda: None, now=now, env={})
    assert missing.reason == "if (item 5 of 7): env.REGION == 'us': no field 'REGION' (fields here: none)"


def test_disabled_rules_never_match(load, make_event):
    ruleset = load(
        "rules:\n  - name: r\n    enabled: false\n    when: {source: servicetrade}\n"
        "    then: [{http.request: {url: x}}]\n"
    )
    (result,) = evaluate_rules(ruleset.rules, make_event(), lambda: None)
    assert (result.matched, result.reason) == (False, "disabled")


def test_if_tolerates_template_braces(verdict):
    assert verdict(ST + "}", if_="\"{{ entity.type == 'repair' }}\"", record=ENTITY) == (True, "matched")
    assert verdict(ST + "}", if_="\"{{ entity.type == 'x' }}\"", record=ENTITY) == (
        False,
        "if: entity.type == 'x' is false; entity.type was 'repair'",
    )


def test_env_values_are_redacted_from_if_reasons(verdict):
    matched, reason = verdict(ST + "}", if_='"synchroteam_datetime(env.TOKEN)"', env={"TOKEN": "hunter22"})
    assert (matched, reason) == (
        False,
        "if: synchroteam_datetime(env.TOKEN): TypeError: expected a datetime or Unix seconds, got '***'",
    )


def test_long_values_are_cut_short_in_reasons(verdict):
    changes = {"status": ("a", "x" * 500)}
    matched, reason = verdict(ST + ", changed: {status: {to: b}}}", changes=changes)
    assert not matched
    assert reason.startswith("when.changed.status.to: wanted 'b', event had 'xxx")
    assert reason.endswith("…") and len(reason) < 200


def test_a_loader_returning_a_non_mapping_counts_as_no_entity(verdict):
    assert verdict(ST + "}", if_='"entity.id"', record=["not", "a", "record"]) == (
        False,
        "if: entity.id: the entity could not be loaded, so it has no field 'id'",
    )


@pytest.mark.parametrize(
    ("if_", "reason"),
    [
        ("event.entity.id == 1", "if: event.entity.id == 1 is false; event.entity.id was 35769"),
        ("event.action == 'created'", "if: event.action == 'created' is false; event.action was 'updated'"),
        (
            "changes.status.new == 'canceled'",
            "if: changes.status.new == 'canceled' is false; changes.status.new was 'completed'",
        ),
        ("vars.team == 'south'", "if: vars.team == 'south' is false; vars.team was 'north'"),
        ("now.year == 2023", "if: now.year == 2023 is false; now.year was 2024"),
        (
            "tz(now, 'America/New_York').hour == 12",
            "if: tz(now, 'America/New_York').hour == 12 is false; tz(now, 'America/New_York').hour was 8",
        ),
        (
            "(entity.completedOn | fromtimestamp).year == 2015",
            "if: (entity.completedOn | fromtimestamp).year == 2015 is false; "
            "(entity.completedOn | fromtimestamp).year was 2014",
        ),
    ],
)
def test_each_name_an_if_sees_can_also_fail(load, make_event, if_, reason):
    text = (
        f'vars: {{team: north}}\nrules:\n  - name: r\n    when: {{source: servicetrade}}\n    if: "{if_}"\n'
        "    then: [{http.request: {url: x}}]\n"
    )
    (result,) = evaluate_rules(
        load(text).rules, make_event(changes=STATUS), lambda: job_record(), now=datetime(2024, 5, 1, 12, tzinfo=UTC)
    )
    assert (result.matched, result.reason) == (False, reason)
