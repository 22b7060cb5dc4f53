"""The console's pages: overview, events, one event's trace, dead letters, rules (with a dry run), targets."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from fieldrelay import operations, queries
from fieldrelay.redaction import Redactor
from fieldrelay.state import PipelineState
from fieldrelay.steps import Step
from receiver.console.auth import COOKIE, ConsoleAuth, read_form
from receiver.console.rulesview import RulesView

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
OUTCOMES = ("failed", "succeeded", "matched", "no match", "stale", "own write")


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

    def __init__(self, state: PipelineState, auth: ConsoleAuth, rules: RulesView, redactor: Redactor) -> None:
        self.state, self.auth, self.rules, self.redactor = state, auth, rules, redactor

    # ---- plumbing ----
    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        base = request.scope.get("root_path", "")
        context.update(
            base=base,
            csrf=self.auth.csrf(),
            flash=request.query_params.get("msg", ""),
            error=request.query_params.get("error", ""),
            now=time.time(),
        )
        return TEMPLATES.TemplateResponse(
            request, template, context, status_code=status, headers={"Cache-Control": "no-store"}
        )

    def gate(self, request: Request) -> Response | None:
        """None when the request may go on; otherwise the answer: disabled, login, or forbidden."""
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
            denied = self.gate(request)
            return denied if denied is not None else await run_in_threadpool(handler, request)

        return endpoint

    def action(
        self, handler: Callable[[Request, dict[str, str]], Response]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A POST: signed in, CSRF checked, then the (blocking) work in a thread."""

        async def endpoint(request: Request) -> Response:
            denied = self.gate(request)
            if denied is not None:
                return denied
            form = await read_form(request)
            if not self.auth.csrf_ok(form):
                return HTMLResponse("<h1>Forbidden</h1><p>The form expired; reload the page.</p>", 403)
            return await run_in_threadpool(handler, request, form)

        return endpoint

    # ---- login ----
    async def login(self, request: Request) -> Response:
        if not self.auth.enabled:
            return self.gate(request) or HTMLResponse("", 503)
        base = request.scope.get("root_path", "")
        next_path = request.query_params.get("next", f"{base}/")
        if request.method == "POST":
            form = await read_form(request)
            next_path = form.get("next", next_path)
            if self.auth.token_matches(form.get("token", "")):
                safe = next_path if next_path.startswith(base + "/") else f"{base}/"
                response = RedirectResponse(safe, 303)
                response.set_cookie(
                    COOKIE,
                    self.auth.session,
                    httponly=True,
                    samesite="strict",
                    path=base or "/",
                    secure=request.url.scheme == "https",
                )
                return response
            return self.page(request, "login.html", 401, next=next_path, failed=True)
        return self.page(request, "login.html", next=next_path, failed=False)

    async def logout(self, request: Request) -> Response:
        base = request.scope.get("root_path", "")
        response = RedirectResponse(f"{base}/login", 303)
        response.delete_cookie(COOKIE, path=base or "/")
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
                source=q.get("source") or None,
                entity=q.get("entity") or None,
                rule=q.get("rule") or None,
                outcome=q.get("outcome") or None,
                since=queries.parse_time(q.get("since")),
                until=queries.parse_time(q.get("until")),
            )
            problem = ""
        except queries.OperationError as exc:
            selection, problem = queries.EventFilter(), str(exc)
        events = queries.list_events(self.state, selection, limit=200)
        return self.page(request, "events.html", events=events, q=dict(q), outcomes=OUTCOMES, problem=problem)

    def event(self, request: Request) -> Response:
        detail = queries.event_detail(self.state, request.path_params["event_id"])
        if detail is None:
            return self.page(request, "missing.html", 404, what=f"event {request.path_params['event_id']}")
        detail["event"] = self.redactor.scrub(detail["event"])
        return self.page(request, "event.html", d=detail)

    def dead_letters(self, request: Request) -> Response:
        q = request.query_params
        try:
            selection = queries.Selection(
                rule=q.get("rule") or None,
                target=q.get("target") or None,
                entity=q.get("entity") or None,
                since=queries.parse_time(q.get("since")),
                until=queries.parse_time(q.get("until")),
            )
            problem = ""
        except queries.OperationError as exc:
            selection, problem = queries.Selection(), str(exc)
        entries = queries.list_dead_letters(self.state, selection)
        return self.page(
            request, "dead_letters.html", entries=entries, q=dict(q), targets=queries.TARGETS, problem=problem
        )

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
