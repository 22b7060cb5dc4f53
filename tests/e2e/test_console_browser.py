"""The console in a real browser (Debian's Chromium driven by Playwright) against the whole running stack.

A webhook comes in; its rule's Synchroteam call is refused (an injected 400), so the action is dead-lettered.
A person signs in, finds the event, reads its trace, and, once Synchroteam is fixed, presses Retry on the
event page. The test asserts what that person sees, and that the customer then exists in Synchroteam.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import httpx
import pytest
import redis

from fieldrelay.state import PipelineState
from fieldrelay_cli.devstack import SANDBOX_SYNCHROTEAM_KEY, Stack, StackConfig
from fieldrelay_cli.embedded_redis import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "console-e2e-token-5f0c"

RULES = """
rules:
  - name: job-customer-to-synchroteam
    when: {source: servicetrade, entity: job, action: updated}
    then:
      - synchroteam.customer.upsert:
          myId: "st-company-{{ event.entity.id }}"
          name: "Customer of job {{ event.entity.id }}"
"""

MESSAGE = {
    "messageId": "m-console",
    "timestamp": "1700000000",
    "data": [
        {
            "action": "updated",
            "timestamp": 1700000000,
            "entity": {"type": "job", "id": 35771, "uri": "https://api.servicetrade.com/api/job/35771"},
        }
    ],
}


def wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def browser():
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        pytest.skip(
            "the browser test needs Debian's Chromium at /usr/bin/chromium "
            "(apt-get install chromium; .ci/run installs it)"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extras)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def test_a_person_follows_an_event_and_retries_its_dead_letter(browser, redis_server, tmp_path):
    from playwright.sync_api import expect

    redis.Redis.from_url(redis_server).flushdb()
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "customer.yaml").write_text(RULES)
    config = StackConfig(
        data_dir=tmp_path,
        redis_url=redis_server,
        receiver_port=free_port(),
        servicetrade_port=free_port(),
        synchroteam_port=free_port(),
        synergist_port=free_port(),
        webhook_tokens="browser-token",
        rules_dir=rules_dir,
        worker_concurrency=1,
        log_dir=tmp_path / "logs",
        extra_env={"FIELDRELAY_CONSOLE_TOKEN": TOKEN},
    )
    with Stack(config) as stack:
        stack.start_redis()
        stack.start_sandbox()
        stack.start_receiver()
        stack.start_worker()
        receiver = config.base_url(config.receiver_port)
        synchroteam = config.base_url(config.synchroteam_port)
        state = PipelineState(redis.Redis.from_url(redis_server))

        # Synchroteam refuses the customer (a permanent 4xx): the action goes to the dead-letter store.
        httpx.post(
            f"{synchroteam}/_sandbox/faults", json={"status": 400, "path_prefix": "/api/v3/customer/send"}, timeout=5
        ).raise_for_status()
        sent = httpx.post(f"{receiver}/webhooks/servicetrade/browser-token", json=MESSAGE, timeout=10)
        assert sent.status_code == 200
        wait_for(lambda: state.dead_letters(), "the dead letter")

        page = browser.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{receiver}/console/events")
        expect(page).to_have_url(re.compile(r"/console/login"))  # signed out: the login form
        page.get_by_label("Console token").fill(TOKEN)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(re.compile(r"/console/events$"))

        row = page.locator("tr", has_text="job 35771")
        expect(row).to_contain_text("job-customer-to-synchroteam")
        expect(row).to_contain_text("failed")
        row.get_by_role("link").first.click()

        expect(page.locator("h1")).to_contain_text("Event ")
        trace = page.locator("#trace")
        for step in ("event.received", "rule.matched", "action.started", "action.failed"):
            expect(trace).to_contain_text(step)
        expect(trace).to_contain_text("SynchroteamRejected")
        expect(trace).to_contain_text("st-company-35771")  # the rendered call
        expect(page.locator("#outcome")).to_have_text("failed")

        # The cause is fixed; the person retries from the event page.
        httpx.delete(f"{synchroteam}/_sandbox/faults", timeout=5).raise_for_status()
        page.get_by_role("button", name="Retry").click()
        expect(page.get_by_role("status")).to_contain_text("retried: re-enqueued")

        def recovered() -> bool:
            page.reload()
            return page.locator("#outcome").inner_text() == "succeeded"

        wait_for(recovered, "the retried action to succeed")
        expect(page.locator("#trace")).to_contain_text("dlq.retried")
        expect(page.locator("#trace tr.step").last).to_contain_text("action.succeeded")

        page.get_by_role("link", name="Dead letters").click()
        expect(page.locator("table")).to_contain_text("No dead letters.")
        page.get_by_role("link", name="Overview").click()
        expect(page.locator("#dlq-size")).to_have_text("0")
        page.close()

        customer = httpx.get(
            f"{synchroteam}/api/v3/customer/details",
            params={"myId": "st-company-35771"},
            auth=("sandbox", SANDBOX_SYNCHROTEAM_KEY),
            timeout=5,
        )
        assert customer.status_code == 200 and customer.json()["name"] == "Customer of job 35771"
        assert state.dead_letters() == []
