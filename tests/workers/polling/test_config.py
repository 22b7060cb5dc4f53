"""Which pollers run: the catalog, FIELDRELAY_POLL_* settings, the optional YAML file and the beat schedule."""

from __future__ import annotations

from pathlib import Path

import pytest

from fieldrelay.settings import SettingsError, load_settings
from workers.polling.config import PollConfigError, load_pollers
from workers.polling.diff import changeset, comparable
from workers.polling.pollers import POLL_TASK, polling_schedule

CREDENTIALS = {"servicetrade_username": "bot", "synchroteam_domain": "acme"}


def names(**settings: object) -> list[str]:
    return [spec.name for spec in load_pollers(load_settings(**settings))]


def test_systems_with_credentials_are_polled_by_default():
    polled = names(**CREDENTIALS)
    assert "servicetrade.job" in polled and "synchroteam.activity" in polled
    assert not any(n.startswith("synergist.") for n in polled)
    assert names(**CREDENTIALS, poll_sources="synchroteam.job,servicetrade") == [
        n for n in polled if n.startswith("servicetrade.") or n == "synchroteam.job"
    ]
    assert names(**CREDENTIALS, poll_sources="none") == []


def test_yaml_file_tunes_pollers(tmp_path: Path):
    config = tmp_path / "pollers.yaml"
    config.write_text(
        "defaults: {overlap: 300}\n"
        "pollers:\n"
        "  servicetrade.job: {interval: 15, start: '2026-01-01', ignore_fields: [latestClockIn]}\n"
        "  synchroteam.activity: {enabled: false}\n"
        "  synergist.job: {enabled: true, full_scan_every: 3}\n"
    )
    specs = {s.name: s for s in load_pollers(load_settings(**CREDENTIALS, poll_config=config))}
    job = specs["servicetrade.job"]
    assert (job.interval, job.overlap, job.start) == (15, 300, 1767225600)
    assert job.ignore_fields == ("updated", "distance", "latestClockIn")
    assert "synchroteam.activity" not in specs
    assert specs["synergist.job"].options["full_scan_every"] == 3
    schedule = polling_schedule(load_settings(**CREDENTIALS, poll_config=config))
    assert schedule["poll servicetrade.job"]["task"] == POLL_TASK
    assert schedule["poll servicetrade.job"]["schedule"] == 15
    assert schedule["poll servicetrade.job"]["args"] == ("servicetrade.job",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pollers: {servicetrade.jobs: {}}", "unknown poller 'servicetrade.jobs'"),
        ("pollers: {servicetrade.job: {intervall: 5}}", "servicetrade.job: unknown option(s) intervall"),
        ("- a list", "expected a mapping"),
    ],
)
def test_bad_yaml_is_refused_with_its_reason(tmp_path: Path, text: str, message: str):
    config = tmp_path / "pollers.yaml"
    config.write_text(text)
    with pytest.raises(PollConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_pollers(load_settings(**CREDENTIALS, poll_config=config))


def test_poll_start_is_validated():
    with pytest.raises(SettingsError, match="FIELDRELAY_POLL_START: not 'now', 'all'"):
        load_settings(poll_start="yesterday")


def test_changeset_ignores_volatile_fields_and_key_order():
    old = comparable({"status": "new", "updated": 1, "location": {"id": 1, "name": "a"}}, ["updated"])
    new = comparable({"status": "new", "updated": 2, "location": {"name": "a", "id": 1}}, ["updated"])
    assert changeset(old, new) == {}
    assert changeset(old, {**new, "status": "completed"}) == {"status": {"old": "new", "new": "completed"}}
    assert changeset(old, {"status": "new"}) == {"location": {"old": {"id": 1, "name": "a"}, "new": None}}


def test_an_unknown_poller_in_poll_sources_is_refused_naming_the_variable():
    with pytest.raises(PollConfigError, match=r"FIELDRELAY_POLL_SOURCES: unknown poller 'servicetrade\.jobs'"):
        load_pollers(load_settings(**CREDENTIALS, poll_sources="servicetrade.jobs"))
