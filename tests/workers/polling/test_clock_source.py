"""ServiceTrade clock events as a poll source: opt-in, windowed on `eventTime` (seed 002, "Clockin/Clockout")."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from fieldrelay.settings import load_settings
from workers.connectors.servicetrade import ServiceTradeClient
from workers.polling.config import PollerSpec, load_pollers
from workers.polling.sources import ServiceTradeClockSource


def test_clock_poller_runs_only_when_named() -> None:
    """It reads every technician's events, so `FIELDRELAY_POLL_SOURCES=servicetrade` does not start it."""
    by_system = {s.name for s in load_pollers(load_settings(servicetrade_username="bot", poll_sources="servicetrade"))}
    named = {
        s.name for s in load_pollers(load_settings(servicetrade_username="bot", poll_sources="servicetrade.clock"))
    }
    assert "servicetrade.clock" not in by_system and "servicetrade.job" in by_system
    assert named == {"servicetrade.clock"}


def test_clock_events_are_listed_by_event_time_window() -> None:
    """Seed 002, "Clockin/Clockout": no `updated` filter or field, `GET /clock` needs a filter; `startTime` and
    `endTime` bound `eventTime`, which is also each record's time."""
    asked: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/auth":
            return httpx.Response(200, json={"data": {"authToken": "t"}})
        if request.url.path == "/api/":
            return httpx.Response(200, json={"data": {"serverTime": 5000}})
        asked.append(dict(request.url.params))
        return httpx.Response(200, json={"data": {"events": [{"id": 7, "eventTime": 4900, "type": "clock-in"}]}})

    client = ServiceTradeClient("https://st.test/api", "bot", SecretStr("pw"), transport=httpx.MockTransport(handler))
    source = ServiceTradeClockSource(client, PollerSpec("servicetrade", "clock", options={"days_back": 1}))
    assert source.clock() == 5000
    [record] = list(source.fetch(4000, False))
    [_ignored] = list(source.fetch(0, True))
    assert (record.id, record.modified_at) == (7, 4900)
    assert asked[0] == {"paired": "false", "startTime": "4000", "endTime": "5000"}
    assert asked[1]["startTime"] == str(5000 - 86400)
