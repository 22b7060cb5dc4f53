"""The secret-forms matrix: each form a secret can take is masked in each place text leaves a process (issue 12,
item 5): logs (ours, httpx's, Celery's), traces, dead letters, the console, Sentry's before_send, CLI output."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest
from pydantic import SecretStr

from fieldrelay.events import ChangeEvent, EntityRef
from fieldrelay.logs import JsonFormatter
from fieldrelay.redaction import Redactor, redactor_for
from fieldrelay.settings import Settings
from fieldrelay.state import PipelineState
from fieldrelay.steps import Step
from rules import RuleLoadError, build_context, load_rules, render_params
from rules.calls import ActionCall
from rules.dryrun import explain
from workers.actions.http import HttpRequest
from workers.actions.registry import action_params
from workers.connectors.synergist import SynergistClient
from workers.execute import shown

SECRET = "p@ss:w0rd!-Chat-Token-4f9a"

FORMS = {
    "raw": SECRET,
    "quote": quote(SECRET, safe=""),
    "quote-default": quote(SECRET),
    "quote_plus": quote_plus(SECRET),
    "base64": base64.b64encode(SECRET.encode()).decode(),
    "basic-header": "Basic " + base64.b64encode(f"bot:{SECRET}".encode()).decode(),
    "basic-header-2": "Basic " + base64.b64encode(f"ab:{SECRET}".encode()).decode(),
    "urlsafe-base64": base64.urlsafe_b64encode(b"x" + SECRET.encode()).decode(),
    "upper": SECRET.upper(),
    "lower": SECRET.lower(),
    "reversed": SECRET[::-1],
    "prefix": SECRET[:12],
    "suffix": SECRET[-10:],
    "slice": SECRET[4:16],
    "prefix-urlencoded": quote(SECRET[:12], safe=""),
}


def leaked(text: str) -> list[str]:
    """Which forms still show in `text` (the user part of a Basic header may show; the secret may not)."""
    found = []
    for name, form in FORMS.items():
        core = form.removeprefix("Basic ")
        if name.startswith("basic") or name.endswith("base64"):
            core = core[4:-4]  # the secret-only middle of its base64
        if core.lower() in text.lower():
            found.append(name)
    return found


@pytest.mark.parametrize("name", list(FORMS))
def test_the_redactor_masks_every_form(name: str) -> None:
    text = f"before {FORMS[name]} after"
    out = Redactor([SECRET]).text(text)
    assert leaked(out) == [] and out.startswith("before ") and out.endswith(" after")


def test_ordinary_text_is_left_alone() -> None:
    text = "job 35769 completed at 1700000000; 00000000; Chat ok; token accepted"
    assert Redactor([SECRET, "5e1d2c3b-0000-4000-8000-000000000001"]).text(text) == text


def everything() -> str:
    return " | ".join(FORMS.values())


def test_log_lines_mask_every_form_from_any_logger() -> None:
    formatter = JsonFormatter(Redactor([SECRET]))
    for logger in ("fieldrelay.pipeline", "httpx", "httpcore.connection", "celery.app.trace"):
        record = logging.makeLogRecord(
            {"name": logger, "msg": "call: %s", "args": (everything(),), "levelno": logging.ERROR}
        )
        record.params = {"url": f"https://x/?k={FORMS['quote_plus']}", "note": FORMS["reversed"]}
        assert leaked(formatter.format(record)) == [], logger


def test_synergist_never_logs_its_password_in_a_url(caplog) -> None:
    """httpx's INFO request line wrote the whole query string, password included (001 puts it there)."""
    client = SynergistClient(
        "http://synergist.test",
        "api-user",
        SecretStr(SECRET),
        "1",
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"success": True, "data": [{"x": 1}]})),
    )
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="httpx"):
        client.clients()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "synergist.test/jsonapi" in text and "[query omitted]" in text
    assert leaked(text) == []


def test_traces_and_dead_letters_mask_every_form(redis_client) -> None:
    state = PipelineState(redis_client, redactor=Redactor([SECRET]))
    state.trace("ev1", Step.ACTION_STARTED, rule="r", index=0, action="http.request", params={"body": everything()})
    state.dead_letter({"event_id": "ev1", "rule": "r", "rule_digest": "d", "index": 0, "error": everything()})
    stored = json.dumps(state.load_trace("ev1")) + json.dumps(state.dead_letters())
    assert leaked(stored) == []


def test_sentry_events_are_scrubbed_like_logs() -> None:
    # fieldrelay.observability's before_send is `redactor_for(settings).scrub(event)`.
    settings = Settings(synchroteam_domain="acme", synchroteam_api_key=SECRET)
    event = {
        "exception": {"values": [{"value": f"refused: {everything()}"}]},
        "breadcrumbs": {"values": [{"message": f"GET /x?password={FORMS['quote']}"}]},
        "request": {"headers": {"X-Note": FORMS["basic-header"]}},
    }
    scrubbed = json.dumps(redactor_for(settings).scrub(event))
    assert leaked(scrubbed) == []
    basic = base64.b64encode(f"acme:{SECRET}".encode()).decode()  # Synchroteam's own Basic credentials
    assert basic not in redactor_for(settings).text(f"Authorization: Basic {basic}")


EVENT = ChangeEvent(
    source="servicetrade", via="webhook", action="updated", entity=EntityRef(type="job", id=7), occurred_at=1700000000
)


@pytest.mark.parametrize(
    "template",
    [
        "{{ env.CHAT_TOKEN | upper }}",
        "{{ env.CHAT_TOKEN | reverse }}",
        "{{ env.CHAT_TOKEN[:12] }}",
        "{{ env.CHAT_TOKEN | urlencode }}",
        "{{ secret('CHAT_TOKEN') | lower }}",
        "{{ env.CHAT_TOKEN | replace('a', '4') }}",  # no redactor can spot this one; the taint does
        "Bearer {{ env.CHAT_TOKEN[::2] }}",
    ],
)
def test_a_rendered_value_derived_from_a_secret_is_masked_in_the_trace(template: str) -> None:
    call = ActionCall("http.request", None, {"url": "https://hooks.example/x", "headers": {"X-Token": template}}, 1)
    rendered = render_params(call, build_context(EVENT, None, env={"CHAT_TOKEN": SECRET}))
    params = HttpRequest.model_validate(rendered)
    assert params.headers["X-Token"] != "[redacted]"  # the target gets the real value
    traced = shown(params, call)
    assert traced["headers"] == {"X-Token": "[redacted]"} and traced["url"] == "https://hooks.example/x"


def test_dry_runs_mask_what_derives_from_a_secret(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "rules:\n  - name: r\n    when: {source: servicetrade, entity: job}\n    then:\n"
        "      - http.request: {url: 'https://h.example/', json: {t: '{{ env.CHAT_TOKEN | reverse }}', n: 1}}\n"
    )
    ruleset = load_rules(tmp_path, action_params(), env_names=["CHAT_TOKEN"])
    text = explain(ruleset, EVENT, None, env={"CHAT_TOKEN": SECRET})
    assert '"t": "***"' in text and '"n": 1' in text and leaked(text) == []


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ secret('HOME') }}", "secret('HOME') is not allowed: add HOME to FIELDRELAY_RULES_ENV"),
        ("{{ env.HOME }}", "env.HOME is not allowed: add HOME to FIELDRELAY_RULES_ENV"),
        ("{{ secret(event.source) }}", "secret() takes the variable's name in quotes"),
    ],
)
def test_secret_and_env_names_are_checked_at_load_like_bang_secret(tmp_path: Path, template: str, message: str):
    (tmp_path / "r.yaml").write_text(
        "rules:\n  - name: r\n    when: {source: servicetrade, entity: job}\n    then:\n"
        f'      - http.request: {{url: "https://h.example/", headers: {{X: "{template}"}}}}\n'
    )
    with pytest.raises(RuleLoadError) as info:
        load_rules(tmp_path, action_params(), env_names=["CHAT_TOKEN"])
    [error] = info.value.errors
    assert str(error).startswith(f"{tmp_path / 'r.yaml'}:5:") and message in str(error)


def test_a_sentry_dsn_is_masked_whole_and_by_its_key_but_its_host_stays_readable() -> None:
    dsn = "https://0123456789abcdef0123456789abcdef@o12.ingest.sentry.example:8443/42"
    redactor = redactor_for(Settings(sentry_dsn=dsn))
    assert redactor.text(f"dsn={dsn}") == "dsn=[redacted]"
    assert redactor.text("key 0123456789ABCDEF0123") == "key [redacted]"
    assert redactor.text("posting to o12.ingest.sentry.example:8443 and 127.0.0.1:9000") == (
        "posting to o12.ingest.sentry.example:8443 and 127.0.0.1:9000"
    )
