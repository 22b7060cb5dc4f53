"""Normalization: the receiver's plain dicts are exactly the JSON form of ChangeEvent."""

from __future__ import annotations

import json
from pathlib import Path

from fieldrelay.events import ChangeEvent
from receiver.webhooks import normalize, parse_message, to_events, token_matches

SAMPLE = (Path(__file__).parents[2] / "examples" / "webhook-sample.json").read_bytes()


def test_dicts_round_trip_through_the_event_model():
    events = normalize(parse_message(SAMPLE))
    assert [ChangeEvent.model_validate(e).model_dump(mode="json") for e in events] == events


def test_string_and_integer_timestamps_are_both_accepted():
    message = json.loads(SAMPLE)
    message["data"][0]["timestamp"] = "1401833052"
    [first, *_] = to_events(parse_message(json.dumps(message).encode()))
    assert first.occurred_at == 1401833052


def test_changeset_absent_empty_and_present_stay_distinct():
    by_id = {e.entity.id: e for e in to_events(parse_message(SAMPLE))}
    assert by_id[34872].changes is None
    assert by_id[9623].changes == {}
    changes = by_id[35769].changes
    assert changes is not None and changes["status"].new == "completed"


def test_duplicate_deliveries_normalize_to_the_same_event_ids():
    first = [e.id for e in to_events(parse_message(SAMPLE))]
    message = json.loads(SAMPLE)
    message["messageId"] = "another-delivery"
    message["data"].reverse()
    assert sorted(first) == sorted(e.id for e in to_events(parse_message(json.dumps(message).encode())))


def test_token_matching():
    assert token_matches("b", [b"a", b"b"])
    assert not token_matches("c", [b"a", b"b"])
    assert not token_matches("", [])
