"""The console's pages: overview, events, one event's trace, dead letters, rules (with a dry run), targets."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import redis
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from fieldrelay import operations, queries
from fieldrelay.metrics import counter_field, metric_key
from fieldrelay.redaction import Redactor
from fieldrelay.state import PipelineState
from fieldrelay.steps import Step
from receiver import rejected
from receiver.console.auth import COOKIE, MAX_FORM, ConsoleAuth, FormTooLarge, read_form
from receiver.console.rulesview import RulesView
from receiver.throttle import Throttle

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
OUTCOMES = ("failed", "succeeded", "matched", "no match", "stale", "own write", "processing")
SOURCES = ("servicetrade", "synchroteam", "synergist")
MAX_PARAM = 200
log = logging.getLogger("fieldrelay.console")


def _text(q: Mapping[str, str], name: str) -> str | None:
    """A free-text query parameter; an absurd one is a 400, not a scan for it."""
    value = (q.get(name) or "").strip()
    if len(value) > MAX_PARAM:
        raise queries.OperationError(f"{name}: longer than {MAX_PARAM} characters")
    return value or None


def _choice(q: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = _text(q, name)
    if value is not None and value not in allowed:
        raise queries.OperationError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(at))) + "Z" if at else "-"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


# How the event page shows each trace step (tests/fieldrelay/test_steps.py fails when one is missing).
TONES: dict[Step, str] = {
    Step.RECEIVED: "",
    Step.DUPLICATE: "",
    Step.STALE: "",
    Step.OWN_WRITE: "",
    Step.REPLAY_REQUESTED: "",
    Step.REPLAYED: "",
    Step.EVENT_RETRY: "retry",
    Step.EVENT_FAILED: "failed",
    Step.NO_RULES: "",
    Step.RULE_MATCHED: "",
    Step.RULE_SKIPPED: "",
    Step.RUN_STARTED: "",
    Step.RUN_DEBOUNCED: "",
    Step.RUN_WAITING: "",
    Step.ACTION_STARTED: "",
    Step.ACTION_DEFERRED: "",
    Step.ACTION_RETRY: "retry",
    Step.ACTION_SUCCEEDED: "succeeded",
    Step.ACTION_FAILED: "failed",
    Step.ON_FAILURE_FAILED: "failed",
    Step.DLQ_RETRIED: "",
    Step.DLQ_DROPPED: "",
}


def _tone(step: str) -> str:
    try:
        return TONES[Step(step)]
    except ValueError:  # a step from an older version, still in a kept trace
        return ""


TEMPLATES.env.filters["tone"] = _tone
TEMPLATES.env.filters["when"] = _when
TEMPLATES.env.filters["pretty"] = _pretty
TEMPLATES.env.filters["compact"] = lambda value: json.dumps(value, ensure_ascii=False, default=str)


class Console:
    """Page handlers over one `PipelineState`; `create_console` routes to them."""

    def __init__(
        self,
        state: PipelineState,
        auth: ConsoleAuth,
        rules: RulesView,
        redactor: Redactor,
        throttle: Throttle | None = None,
        clock_skew: int = 300,
    ) -> None:
        self.state, self.auth, self.rules, self.redactor = state, auth, rules, redactor
        self.throttle = throttle or Throttle()
        self.clock_skew = clock_skew  # FIELDRELAY_CLOCK_SKEW: a replayed webhook is read as the receiver reads it

    # ---- plumbing ----
    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        base = request.scope.get("root_path", "")
        context.update(
            base=base,
            csrf=self.auth.csrf(request),
            nonce=getattr(request.state, "csp_nonce", ""),
            flash=request.query_params.get("msg", ""),
            error=request.query_params.get("error", ""),
            now=time.time(),
        )
        return TEMPLATES.TemplateResponse(
            request, template, context, status_code=status, headers={"Cache-Control": "no-store"}
        )

    def gate(self, request: Request) -> Response | None:
        """None when the request may go on; otherwise the answer: disabled, login, or forbidden (Redis I/O)."""
        if not self.auth.enabled:
            return HTMLResponse("<h1>Console disabled</h1><p>Set FIELDRELAY_CONSOLE_TOKEN to enable it.</p>", 503)
        if self.auth.allowed(request):
            return None
        if request.method == "GET":
            base = request.scope.get("root_path", "")
            return RedirectResponse(f"{base}/login?next={quote(request.url.path)}", 303)
        return HTMLResponse("<h1>Forbidden</h1>", 403)

    def back(self, request: Request, path: str, **message: str) -> Response:
        base = request.scope.get("root_path", "")
        target = path if path.startswith(base + "/") else f"{base}/"
        return RedirectResponse(f"{target}{'&' if '?' in target else '?'}{urlencode(message)}", 303)

    def guarded(self, handler: Callable[[Request], Response]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            denied = await run_in_threadpool(self.gate, request)
            return denied if denied is not None else await run_in_threadpool(handler, request)

        return endpoint

    def action(
        self, handler: Callable[[Request, dict[str, str]], Response]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A POST: signed in, CSRF checked, then the (blocking) work in a thread."""

        async def endpoint(request: Request) -> Response:
            denied = await run_in_threadpool(self.gate, request)
            if denied is not None:
                return denied
            try:
                form = await read_form(request)
            except FormTooLarge:
                return HTMLResponse(f"<h1>Too large</h1><p>The form is over {MAX_FORM // 1024} KiB.</p>", 413)
            if not self.auth.csrf_ok(request, form):
                return HTMLResponse("<h1>Forbidden</h1><p>The form expired; reload the page.</p>", 403)
            return await run_in_threadpool(handler, request, form)

        return endpoint

    # ---- sign in and out ----
    async def login(self, request: Request) -> Response:
        if not self.auth.enabled:
            return self.gate(request) or HTMLResponse("", 503)
        base = request.scope.get("root_path", "")
        next_path = request.query_params.get("next", f"{base}/")
        if request.method != "POST":
            return self.page(request, "login.html", next=next_path, failed=False, waiting=0)
        address = request.client.host if request.client else "unknown"
        try:
            form = await read_form(request)
        except FormTooLarge:
            return HTMLResponse("<h1>Too large</h1>", 413)
        next_path = form.get("next", next_path)
        waiting = self.throttle.blocked(address)
        if waiting:
            await run_in_threadpool(self._count, "fieldrelay_auth_throttled_total")
            response = self.page(request, "login.html", 429, next=next_path, failed=False, waiting=int(waiting) + 1)
            response.headers["Retry-After"] = str(int(waiting) + 1)
            return response
        if not self.auth.token_matches(form.get("token", "")):
            failures = self.throttle.failed(address)
            await run_in_threadpool(self._count, "fieldrelay_auth_failures_total")
            log.warning(
                "console sign-in failed from %s (%d in %g s%s)",
                address,
                failures,
                self.throttle.window,
                "; throttled" if failures >= self.throttle.limit else "",
            )
            return self.page(request, "login.html", 401, next=next_path, failed=True, waiting=0)
        self.throttle.succeeded(address)
        session_id = await run_in_threadpool(self.auth.open_session)
        safe = next_path if next_path.startswith(base + "/") and not next_path.startswith("//") else f"{base}/"
        response = RedirectResponse(safe, 303)
        response.set_cookie(**self.auth.cookie(session_id), path=base or "/")  # type: ignore[arg-type]
        return response

    def _count(self, name: str) -> None:
        try:
            self.state.r.hincrby(metric_key(name), counter_field(name, {"kind": "console"}), 1)
        except redis.RedisError as exc:  # a metric never changes the answer
            log.warning("metric %s not counted: %s", name, type(exc).__name__)

    def logout(self, request: Request, form: dict[str, str]) -> Response:
        """A POST with the CSRF value (see `action`): the session is deleted in Redis, then the cookie."""
        session_id = self.auth.session(request)
        if session_id is not None:
            self.auth.close_session(session_id)
        base = request.scope.get("root_path", "")
        response = RedirectResponse(f"{base}/login", 303)
        response.delete_cookie(COOKIE, path=base or "/", secure=self.auth.secure, httponly=True, samesite="strict")
        return response

    # ---- pages ----
    def overview(self, request: Request) -> Response:
        view = queries.overview(self.state)
        events = [e for _, e, _ in view["minutes"]]
        failures = [f for _, _, f in view["minutes"]]
        peak = max([1, *events, *failures])
        chart = [
            {"at": at, "events": e, "failures": f, "h_events": round(60 * e / peak), "h_failures": round(60 * f / peak)}
            for at, e, f in view["minutes"]
        ]
        return self.page(
            request,
            "overview.html",
            totals=view["totals"],
            chart=chart,
            peak=peak,
            rate_5m=sum(events[-5:]) / 5,
            failures_5m=sum(failures[-5:]),
            dlq_size=view["dlq_size"],
            depths=view["depths"],
            targets=view["targets"],
            held=view["held"],
            stranded=view["stranded"],
        )

    def events(self, request: Request) -> Response:
        q = request.query_params
        try:
            selection = queries.EventFilter(
                source=_choice(q, "source", SOURCES),
                entity=_text(q, "entity"),
                rule=_text(q, "rule"),
                outcome=_choice(q, "outcome", OUTCOMES),
                since=queries.parse_time(_text(q, "since")),
                until=queries.parse_time(_text(q, "until")),
            )
        except queries.OperationError as exc:
            return self.page(request, "events.html", 400, events=[], q=dict(q), outcomes=OUTCOMES, problem=str(exc))
        events = queries.list_events(self.state, selection, limit=200)
        return self.page(request, "events.html", events=events, q=dict(q), outcomes=OUTCOMES, problem="")

    def event(self, request: Request) -> Response:
        detail = queries.event_detail(self.state, request.path_params["event_id"])
        if detail is None:
            return self.page(request, "missing.html", 404, what=f"event {request.path_params['event_id']}")
        detail["event"] = self.redactor.scrub(detail["event"])
        return self.page(request, "event.html", d=detail)

    def dead_letters(self, request: Request) -> Response:
        q = request.query_params
        targets = (*queries.TARGETS, "events")
        try:
            selection = queries.Selection(
                rule=_text(q, "rule"),
                target=_choice(q, "target", targets),
                entity=_text(q, "entity"),
                since=queries.parse_time(_text(q, "since")),
                until=queries.parse_time(_text(q, "until")),
            )
        except queries.OperationError as exc:
            return self.page(
                request, "dead_letters.html", 400, entries=[], q=dict(q), targets=targets, problem=str(exc)
            )
        entries = queries.list_dead_letters(self.state, selection)
        return self.page(request, "dead_letters.html", entries=entries, q=dict(q), targets=targets, problem="")

    def rejected_webhooks(self, request: Request) -> Response:
        entries = [self.redactor.scrub(e) for e in rejected.list_rejected(self.state.r)]
        return self.page(request, "rejected.html", entries=entries)

    def rejected_body(self, request: Request) -> Response:
        try:
            entry = rejected.show_rejected(self.state.r, request.path_params["rejected_id"])
        except rejected.RejectedError as exc:
            return self.page(request, "missing.html", 404, what=str(exc))
        return self.page(request, "rejected.html", entries=[], shown=self.redactor.scrub(entry))

    def rejected_replay(self, request: Request, form: dict[str, str]) -> Response:
        rejected_id = request.path_params["rejected_id"]
        back = f"{request.scope.get('root_path', '')}/rejected"
        try:
            count = rejected.replay_rejected(self.state.r, rejected_id, max_skew=self.clock_skew)
        except rejected.RejectedError as exc:
            return self.back(request, back, error=self.redactor.text(str(exc))[:2000])
        return self.back(request, back, msg=f"Rejected webhook {rejected_id} replayed: {count} event(s) enqueued")

    def dead_letter_action(self, request: Request, form: dict[str, str]) -> Response:
        dlq_id, verb = request.path_params["dlq_id"], request.path_params["verb"]
        if verb not in ("retry", "drop"):
            return HTMLResponse("<h1>Not found</h1>", 404)
        back = form.get("back") or f"{request.scope.get('root_path', '')}/dead-letters"
        try:
            entry = (operations.retry_dead_letter if verb == "retry" else operations.drop_dead_letter)(
                self.state, dlq_id
            )
        except queries.OperationError as exc:
            return self.back(request, back, error=str(exc))
        done = "retried: re-enqueued" if verb == "retry" else "dropped"
        return self.back(request, back, msg=f"Dead letter {dlq_id} {done} ({entry.get('rule')}, {entry.get('action')})")

    def rules_page(
        self, request: Request, result: str | None = None, event_text: str = "", entity_text: str = ""
    ) -> Response:
        view = self.rules.current()
        workers = self.state.rules_status()  # what the workers published on reload
        return self.page(
            request,
            "rules.html",
            view=view,
            rules=view.ruleset.rules if view.ruleset else [],
            workers=workers,
            result=result,
            event_text=event_text,
            entity_text=entity_text,
        )

    def rules_index(self, request: Request) -> Response:
        return self.rules_page(request)

    def rules_test(self, request: Request, form: dict[str, str]) -> Response:
        event_text, entity_text = form.get("event", ""), form.get("entity", "")
        result = self.redactor.text(self.rules.dry_run(event_text, entity_text))
        return self.rules_page(request, result, event_text, entity_text)

    def targets(self, request: Request) -> Response:
        return self.page(request, "targets.html", targets=queries.target_statuses(self.state))

    def target_action(self, request: Request, form: dict[str, str]) -> Response:
        name, verb = request.path_params["name"], request.path_params["verb"]
        if verb not in ("pause", "resume"):
            return HTMLResponse("<h1>Not found</h1>", 404)
        back = f"{request.scope.get('root_path', '')}/targets"
        try:
            if verb == "pause":
                operations.pause_target(self.state, name, form.get("reason", "").strip() or "paused from the console")
            else:
                operations.resume_target(self.state, name)
        except queries.OperationError as exc:
            return self.back(request, back, error=str(exc))
        return self.back(request, back, msg=f"{name} {'paused' if verb == 'pause' else 'resumed'}")
