"""Pipeline state in Redis: event claims, matched rules, step results, the action ledger, links and traces."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypedDict

import orjson
import redis

from fieldrelay.batch import TRACE_APPEND, VersionConflict, WriteBatch, WriterScript
from fieldrelay.bounds import bounded
from fieldrelay.entitystate import TOKEN_LENGTH, EntityStore, EntityVersion
from fieldrelay.metrics import log_step, observe, record
from fieldrelay.records import EVENT_FIELD, SUMMARIES, Claim, Results, result_field, result_fields, step_results
from fieldrelay.redaction import Redactor
from fieldrelay.steps import FAILURES, Step

PREFIX = "fieldrelay"
DAY = 86400
RULES_STATUS_KEY = f"{PREFIX}:rules:status"
UNLOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
REWRITE_RULE = 10.0  # seconds: a matched rule's record is written again at most this often by one process
# Seconds of a step lock's lease that must be left for its holder to free it without comparing tokens: far
# more than the clocks of this process and Redis can drift apart in a lease.
UNLOCK_MARGIN = 10.0
RULES_CACHED = 128  # rule versions a process keeps in memory (a rule may be large: bounded by rules/bounds.py)


class RulesStatus(TypedDict):
    """The rule set the workers run, as they last published it (`/readyz`, the console)."""

    ok: bool
    rules: int
    digest: str
    loaded_at: float
    errors: list[str]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class PipelineState:
    """Every key the workers keep, in one place, under the `fieldrelay:` prefix.

    >>> state = PipelineState(redis.Redis.from_url(url))   # doctest: +SKIP
    >>> state.claim_event("ab12", task_id="t-1")            # doctest: +SKIP
    True
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        redactor: Redactor | None = None,
        retention: int = 7 * DAY,
        failure_retention: int = 30 * DAY,
        entity_ttl: int = 30 * DAY,
        entity_max_bytes: int = 16384,
    ) -> None:
        self.r = client
        self.redactor = redactor or Redactor([])
        self.retention = retention
        self.failure_retention = failure_retention
        self.entities = EntityStore(client, ttl=entity_ttl, max_bytes=entity_max_bytes)
        # Rules are immutable per digest: kept in the process once read or written (never changed, only dropped).
        self._rules: dict[str, dict[str, Any]] = {}
        self._rules_written: dict[str, float] = {}  # digest -> when this process last wrote its record
        self._prefetched: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # run_and_prefetch's read
        self.last_saved: tuple[str, dict[str, Any]] = ("", {})
        # Events for the console's index, kept for one ZADD at the end of a task that evaluates several
        # (`list_together`); None: each event's step writes its own entry.
        self.unlisted: dict[str, float] | None = None
        # EXPIRE ... GT needs Redis 7; the embedded server is 6.2, so extend-only in Lua.
        self._unlock = client.register_script(UNLOCK)
        self._append_extend = client.register_script(TRACE_APPEND)
        self._summaries = client.register_script(SUMMARIES)
        self.batch: WriteBatch | None = None
        self._depth = 0

    @contextlib.contextmanager
    def batched(self, *, hold: Callable[[], bool] | None = None) -> Iterator[None]:
        """Collect the trace entries, metrics and plain writes of a step, and send them in one round trip
        when it ends (fieldrelay/batch.py), or earlier at `flush()` or with a read. A batch inside a batch
        is the same one. When `hold()` says so at a normal end, the batch stays open for the next step
        of the same task to send (an inline action: its first read carries them); else `end_batch()`."""
        if self.batch is None:
            self.batch = WriteBatch(self.r)
        self._depth += 1
        try:
            yield
        except BaseException:
            self._rules_written.clear()  # the rule records of a failed step may not have been written
            self._depth -= 1
            if not self._depth:
                # What the step wrote before it failed; refused whole if its version write lost meanwhile (the
                # step runs again either way, and the failure it raised is the one to handle).
                with contextlib.suppress(VersionConflict):
                    self.end_batch()
            raise
        self._depth -= 1
        if self._depth:
            return
        if hold is not None and hold():
            self.batch.held = True
        else:
            self.end_batch()

    def end_batch(self) -> None:
        """Send and close the open batch, if any. A held batch whose send fails stays open, its writes kept:
        the next step (run again once Redis is back) sends them; any other is written again by its rerun."""
        batch = self.batch
        if batch is None:
            return
        try:
            batch.send()
        except (redis.ConnectionError, redis.TimeoutError):
            if not batch.held:
                self.batch = None
            raise
        except VersionConflict:  # refused whole: nothing of it is kept, the step evaluates again
            self.batch = None
            raise
        self.batch = None

    def flush(self) -> None:
        """Send what the batch holds now: before a task message leaves, or before a call to a target."""
        if self.batch is not None:
            self.batch.send()

    def run_after_writes(self, script: WriterScript, keys: list[str], args: list[Any]) -> Any:
        """`script`'s answer, its call making the batch's writes first, if one is open."""
        if self.batch is not None:
            return self.batch.run(script, keys, args)
        return script(keys, args)

    def read_after_writes(self, reads: Callable[[Any], None]) -> list[Any]:
        """The answers to what `reads(pipe)` adds, sent after (and with) the batch's writes, if one is open."""
        if self.batch is not None:
            return self.batch.send(reads)
        pipe = self.r.pipeline(transaction=False)
        reads(pipe)
        return list(pipe.execute())

    def _writer(self) -> Any:
        return self.batch.pipe if self.batch is not None else self.r

    def key(self, *parts: str | int) -> str:
        return ":".join((PREFIX, *map(str, parts)))

    # An event is processed by the first task that claims it; a redelivery of that same
    # task (same task id, after a crash) may claim again, a duplicate delivery may not.
    def claim_event(self, event_id: str, task_id: str) -> bool:
        return self.claim_and_read(event_id, task_id)[0].claimed

    def claim_and_read(self, event_id: str, task_id: str | None, *keys: str) -> tuple[Claim, list[Any]]:
        """`claim_event` (unless `task_id` is None), and the values of `keys` (one MGET), in one round trip:
        (how the claim went, their values)."""
        key = self.key("claim", event_id)
        pipe = self.r.pipeline(transaction=False)
        if task_id is not None:
            pipe.set(key, task_id, nx=True, ex=self.retention)
        if keys:
            pipe.mget(keys)
        answers = pipe.execute()
        values = list(answers[-1]) if keys else []
        if task_id is None:
            return Claim.NONE, values
        if answers[0]:
            return Claim.NEW, values
        owner = self.r.get(key)  # held already: by this task (a redelivery of it), or another (a duplicate)
        return (Claim.AGAIN if owner is not None and _text(owner) == task_id else Claim.TAKEN), values

    def mark_seen(self, source: str, entity_type: str, entity_id: str | int, occurred_at: int) -> None:
        """Record that a change at `occurred_at` was decided for an entity, never moving backwards.

        The pipeline does this when it writes the entity's version (`workers.pipeline`); pollers read
        it back (`seen_at`): a change a webhook already delivered is not emitted again.
        """
        while True:
            stored = self.entities.read(source, entity_type, entity_id)
            if stored.newest is not None and stored.newest >= occurred_at:
                return
            updated = dataclasses.replace(stored, newest=occurred_at)
            if self.entities.write(source, entity_type, entity_id, updated, expect=stored.token):
                return

    def write_entity(
        self, source: str, entity_type: str, entity_id: str | int, version: EntityVersion, *, expect: str
    ) -> bool:
        """`EntityStore.write`; inside a batch, made by the batch's next send instead, before its other writes,
        and only if the stored version still has the token `expect` then: else that send makes none of the
        step's writes and raises VersionConflict, so the step evaluates again (`send_guarded` sends it now)."""
        if self.batch is None or self.entities.r is not self.r:
            return self.entities.write(source, entity_type, entity_id, version, expect=expect)
        key = self.entities.key(source, entity_type, entity_id)
        self.batch.guard(key, expect, version.encode(), self.entities.ttl, TOKEN_LENGTH)
        return True

    def send_guarded(self) -> None:
        """Send the batch now if a guarded write in it was not sent yet (raises VersionConflict if refused)."""
        if self.batch is not None and self.batch.guarded:
            self.batch.send()

    def conflicted(self) -> None:
        """A send was refused whole: the rule records it held were not written after all."""
        self._rules_written.clear()

    def seen_at(self, source: str, entity_type: str, entity_id: str | int) -> int | None:
        return self.entities.read(source, entity_type, entity_id).newest

    # An event's record is one hash: its console summary (fieldrelay/metrics.py), the event itself (EVENT_FIELD)
    # and each step's result (`result_field`: r:<rule digest>:<index or step id>), a step's index field being
    # its ledger entry. One key and one TTL where there were four keys (event, summary, step results, ledger
    # per step): a step's writes are one HSET. Its TTL is set when the event is saved (a failure extends it);
    # a step's result does not shorten it.
    def record_key(self, event_id: str) -> str:
        return self.key("evsum", event_id)

    def save_event(self, event_id: str, event: dict[str, Any]) -> None:
        record, writer = self.record_key(event_id), self._writer()
        writer.hset(record, EVENT_FIELD, orjson.dumps(event))
        writer.expire(record, self.retention)
        self.last_saved = (event_id, event)

    def summaries(self, event_ids: list[str]) -> list[dict[bytes, bytes]]:
        """The console summary fields of each event's record ({} for none), without the event and its step
        results, which stay in Redis (a list of thousands of events need not carry them)."""
        keys = [self.record_key(e) for e in event_ids]
        return [dict(zip(r[::2], r[1::2], strict=True)) for r in self._summaries(keys=keys)] if keys else []

    @contextlib.contextmanager
    def list_together(self) -> Iterator[Callable[[], None]]:
        """Inside, the events a task evaluates wait to be listed in the console's index; call what it yields to
        list them (one ZADD), before the task's message is acknowledged: a task killed before that runs them
        again when it is delivered again, which lists them then."""
        self.unlisted = {}

        def list_them() -> None:
            if self.unlisted:
                self.r.zadd(self.key("events"), self.unlisted)
                self.unlisted.clear()

        try:
            yield list_them
        finally:
            self.unlisted = None

    def just_saved(self, event_id: str) -> dict[str, Any] | None:
        """The event this process saved last, if it is `event_id`: what its own next steps read, unread."""
        return self.last_saved[1] if self.last_saved[0] == event_id else None

    def load_event(self, event_id: str) -> dict[str, Any] | None:
        raw = self.r.hget(self.record_key(event_id), EVENT_FIELD)
        if raw is None:  # saved before the record held it (LEGACY)
            raw = self.r.get(self.key("event", event_id))
        return None if raw is None else orjson.loads(raw)

    def save_rule(self, digest: str, rule: dict[str, Any]) -> None:
        # Action tasks run the exact rule version that matched, even if rules reload meanwhile. Written again
        # at a match at least REWRITE_RULE seconds after this process last wrote it: another process reads it
        # from Redis, which may have lost it (a restart without persistence, or an fsync's last second).
        now = time.monotonic()
        if now - self._rules_written.get(digest, -REWRITE_RULE) < REWRITE_RULE:
            return
        self._writer().set(self.key("rule", digest), orjson.dumps(rule), ex=self.retention)
        self._remember_rule(digest, rule)
        if len(self._rules_written) >= RULES_CACHED:
            self._rules_written.clear()
        self._rules_written[digest] = now

    def load_rule(self, digest: str) -> dict[str, Any] | None:
        cached = self._rules.get(digest)
        if cached is not None:
            return cached
        raw = self.r.get(self.key("rule", digest))
        if raw is None:
            return None
        rule: dict[str, Any] = orjson.loads(raw)
        self._remember_rule(digest, rule)
        return rule

    def _remember_rule(self, digest: str, rule: dict[str, Any]) -> None:
        if len(self._rules) >= RULES_CACHED:  # a bound, whatever number of rule versions come and go
            self._rules.clear()
        self._rules[digest] = rule

    def action_done(self, event_id: str, digest: str, index: int) -> dict[str, Any] | None:
        done, _ = self._results(event_id, digest, index, self.r.hgetall(self.record_key(event_id)))
        return done

    def mark_action_done(
        self, event_id: str, digest: str, index: int, step_id: str | None, result: dict[str, Any]
    ) -> None:
        """Record step `index` as done with `result` (and under its `step_id`, which later templates read)."""
        dumped = orjson.dumps(result)
        fields = {result_field(digest, index): dumped, **({result_field(digest, step_id): dumped} if step_id else {})}
        self._writer().hset(self.record_key(event_id), mapping=fields)

    def done_and_steps(self, event_id: str, digest: str, index: int) -> Results:
        """`action_done` and `load_steps` in one round trip, or none if `run_and_prefetch` read them."""
        read = self._prefetched.pop((event_id, digest, index), None)
        if read is not None:
            return read
        [fields] = self.read_after_writes(lambda pipe: pipe.hgetall(self.record_key(event_id)))
        return self._results(event_id, digest, index, fields)

    def _results(self, event_id: str, digest: str, index: int | None, fields: dict[Any, Any]) -> Results:
        legacy_ledger = self.key("ledger", event_id, digest, index) if index is not None else None
        steps = self.key("steps", event_id, digest)
        return step_results(self.r, fields, digest, index, legacy_steps=steps, legacy_ledger=legacy_ledger)

    def run_and_prefetch(
        self, step: tuple[str, str, int], *, new: bool = False
    ) -> Callable[[WriterScript, list[str], list[Any]], Any]:
        """`run_after_writes`, reading `done_and_steps(*step)` in the same round trip for the step's next
        call (an event's task that will run that step itself: no round trip of its own). `new`: the event
        was claimed for the first time just now, so none of its steps ran: nothing to read.

        Read before the script runs, as `done_and_steps` reads before the step lock is taken: the lock,
        not this read, keeps two owners from running the step at once."""

        def run(script: WriterScript, keys: list[str], args: list[Any]) -> Any:
            self._prefetched.clear()  # one step ahead, never more
            if new:
                self._prefetched[step] = (None, {})
                return self.run_after_writes(script, keys, args)
            record = self.record_key(step[0])
            if self.batch is None:
                answer = script(keys, args)
                fields = self.r.hgetall(record)
            else:
                answer, fields = self.batch.run(script, keys, args, reads=lambda pipe: pipe.hgetall(record))
            self._prefetched[step] = self._results(*step, fields)
            return answer

        return run

    def load_steps(self, event_id: str, digest: str) -> dict[str, Any]:
        return self._results(event_id, digest, None, self.r.hgetall(self.record_key(event_id)))[1]

    def forget_results(self, event_id: str, digest: str | None = None, index: int | None = None) -> int:
        """Clear step results, so a replayed action runs again instead of being skipped: step `index` of rule
        version `digest`, or every step of `digest`, or of every version. Returns how many were cleared."""
        record = self.record_key(event_id)
        names = result_fields(self.r.hkeys(record), digest, index)
        if digest is not None and index is not None:  # LEGACY: its ledger entry
            legacy = [self.key("ledger", event_id, digest, index)]
        else:  # LEGACY: the steps hash and the ledger entries of each rule version
            legacy = [*self.r.scan_iter(match=self.key("ledger", event_id, f"{digest or '*'}:*"), count=500)]
            legacy += [*self.r.scan_iter(match=self.key("steps", event_id, digest or "*"), count=500)]
        pipe = self.r.pipeline(transaction=True)
        if names:
            pipe.hdel(record, *names)
        if legacy:
            pipe.delete(*legacy)
        return int(sum(pipe.execute())) if names or legacy else 0

    def lock_step(self, key: str, owner: str | None = None, lease: int = 120) -> str | None:
        """A lease on one (entity, rule, step); None when another task holds it.

        `owner` is the Celery task id, which a redelivery keeps: a task killed while holding the
        lease may take it back at once instead of waiting out the lease.
        """
        token = owner or uuid.uuid4().hex
        name = self.key("steplock", key)
        if self.r.set(name, token, nx=True, ex=lease):
            return token
        held = self.r.get(name)
        if held is not None and _text(held) == token:
            self.r.expire(name, lease)
            return token
        return None

    def step_lock(self, key: str, owner: str | None = None, lease: int = 120) -> tuple[str, str, int]:
        """(Redis key, token, lease) of `lock_step`'s lease, for a caller that takes it in its own script
        (workers/gate.py takes it with the target's slot)."""
        return self.key("steplock", key), owner or uuid.uuid4().hex, lease

    def unlock_step(self, key: str, token: str, *, taken_at: float | None = None, lease: int = 120) -> None:
        """Release `lock_step`'s lease if `token` still holds it. `taken_at`: when (time.monotonic()) this
        process was granted it: well within the lease nobody else can have taken it, and a DEL alone frees it
        (no GET to compare first)."""
        name = self.key("steplock", key)
        if taken_at is not None and time.monotonic() - taken_at < lease - UNLOCK_MARGIN:
            self._writer().delete(name)  # sent with the step's next writes (the ledger, on success)
        elif self.batch is not None:
            self.batch.unlock(name, token)
        else:
            self._unlock(keys=[name], args=[token])

    def link_store(self) -> RedisLinkStore:
        return RedisLinkStore(self.r, self.key("link"), self.retention * 52)

    def prepared_trace(self, event_id: str, step: Step, **detail: Any) -> tuple[list[Any], Callable[[], None]]:
        """One trace entry's writes (and its console summary's, if its step has any) as `WriteBatch.words`, for
        a script that makes them only if it grants the step (workers/gate.py), and what logs it, to call once it
        did. What the entry records in the process (counters, an action's start time) is recorded now."""
        entry, raw = self.redactor.redacted(bounded({"at": time.time(), "step": str(step), **detail}))
        writes = WriteBatch(self.r)
        writes.trace(self.key("trace", event_id), raw, self._ttl(step), extend=step in FAILURES)
        record(self, event_id, entry, writes)
        return writes.words(), functools.partial(log_step, self, event_id, entry)

    def _ttl(self, step: Step) -> int:
        return self.failure_retention if step in FAILURES else self.retention

    def trace(self, event_id: str, step: Step, **detail: Any) -> None:
        """Append one redacted trace entry; failures keep the trace for `failure_retention`."""
        entry, raw = self.redactor.redacted(bounded({"at": time.time(), "step": str(step), **detail}))
        key = self.key("trace", event_id)
        ttl = self._ttl(step)
        if self.batch is not None:
            self.batch.trace(key, raw, ttl, extend=step in FAILURES)
            observe(self, event_id, entry, self.batch)
            return
        self._append_extend(keys=[key], args=[ttl, raw])
        observe(self, event_id, entry)  # metrics and the console's event index, from this one place

    def load_trace(self, event_id: str) -> list[dict[str, Any]]:
        return [orjson.loads(x) for x in self.r.lrange(self.key("trace", event_id), 0, -1)]

    # Dead letters: `fieldrelay:dlq` orders ids by time, `fieldrelay:dlq:entry` holds each entry.
    # The id is stable for (event, rule version, step): dead-lettering the same step again
    # (a retry that failed again) replaces its entry instead of adding a second one.
    # `kind` is `action` (a rule's step), `event` (its rules could not be evaluated), `ingest`,
    # `run` or `poll`; all but actions carry the Celery `task` (name, args, queue) that runs them again.
    def dead_letter(self, entry: dict[str, Any], task_args: list[Any] | None = None) -> str:
        """Store a failure for good; `task_args` (kept whole, neither cut nor masked) rerun its `task`."""
        event_id = entry.get("event_id") or ""
        dlq_id = dead_letter_id(event_id, entry.get("rule_digest", ""), entry.get("index", 0))
        entry = {"kind": "action", **entry, "event_id": event_id}
        if "params" not in entry and entry["kind"] == "action":
            # the rendered request, as its trace recorded it (already redacted)
            entry["params"] = self._rendered(event_id, entry.get("rule"), entry.get("index"))
        payload = orjson.dumps(self.redactor.scrub(bounded({"id": dlq_id, "at": time.time(), **entry})), default=str)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.key("dlq", "entry"), dlq_id, payload)
        if task_args is not None:
            # json, not orjson: a payload that failed may hold what orjson refuses (an integer past 64 bits).
            pipe.hset(self.key("dlq", "args"), dlq_id, json.dumps(task_args, default=str))
        pipe.zadd(self.key("dlq"), {dlq_id: time.time()})
        pipe.execute()
        return dlq_id

    def dead_letter_args(self, dlq_id: str) -> list[Any] | None:
        """The arguments a dead letter's `task` runs again with, as they were."""
        raw = self.r.hget(self.key("dlq", "args"), dlq_id)
        return None if raw is None else json.loads(raw)

    def _rendered(self, event_id: str, rule: Any, index: Any) -> Any:
        for step in reversed(self.load_trace(event_id)):
            if step.get("step") == "action.started" and step.get("rule") == rule and step.get("index") == index:
                return step.get("params")
        return None

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every dead letter, oldest first, each with its `id` and the `at` it failed."""
        # redis-py types zrange as the union of its forms; without withscores each item is bytes or str.
        ids = [_text(x) for x in self.r.zrange(self.key("dlq"), 0, -1)]  # type: ignore[arg-type]
        if not ids:
            return []
        raw = self.r.hmget(self.key("dlq", "entry"), ids)
        return [orjson.loads(x) for x in raw if x is not None]

    def dead_letter_entry(self, dlq_id: str) -> dict[str, Any] | None:
        raw = self.r.hget(self.key("dlq", "entry"), dlq_id)
        return None if raw is None else orjson.loads(raw)

    def remove_dead_letter(self, dlq_id: str) -> bool:
        pipe = self.r.pipeline(transaction=True)
        pipe.zrem(self.key("dlq"), dlq_id)
        pipe.hdel(self.key("dlq", "entry"), dlq_id)
        pipe.hdel(self.key("dlq", "args"), dlq_id)
        removed, _, _ = pipe.execute()
        return bool(removed)

    def dlq_size(self) -> int:
        return int(self.r.zcard(self.key("dlq")))

    # A paused target's actions wait (the pipeline checks `target_paused` before calling it).
    def pause_target(self, target: str, *, until: float | None = None, reason: str = "") -> None:
        """Pause `target` until resumed, or until the Unix time `until` (the flag expires then)."""
        value = orjson.dumps({"at": time.time(), "until": until, "reason": reason})
        ttl = None if until is None else max(1, int(until - time.time()))
        self.r.set(self.key("paused", target), value, ex=ttl)

    def resume_target(self, target: str) -> bool:
        return bool(self.r.delete(self.key("paused", target)))

    def target_paused(self, target: str) -> bool:
        return bool(self.r.exists(self.key("paused", target)))

    def pause_info(self, target: str) -> dict[str, Any] | None:
        raw = self.r.get(self.key("paused", target))
        return None if raw is None else orjson.loads(raw)

    def record_rate(self, target: str, info: Any) -> None:
        """Keep the rate budget and quota a target last reported (a connector's `RateInfo`, or a dict)."""
        fields = info if isinstance(info, dict) else dataclasses.asdict(info)
        values = {k: str(v) for k, v in fields.items() if v is not None}
        values["seen_at"] = str(time.time())
        self.r.hset(self.key("rate", target), mapping=values)

    def publish_rules_status(self, status: RulesStatus) -> None:
        self.r.set(RULES_STATUS_KEY, orjson.dumps(status))

    def rules_status(self) -> RulesStatus | None:
        raw = self.r.get(RULES_STATUS_KEY)
        return None if raw is None else orjson.loads(raw)

    def first_alert(self, name: str, ttl: int) -> bool:
        """True for the first caller in `ttl` seconds: an alert about the same thing is sent once."""
        return bool(self.r.set(self.key("alerted", name), 1, nx=True, ex=ttl))

    def target_rate(self, target: str) -> dict[str, float]:
        raw = self.r.hgetall(self.key("rate", target))
        return {_text(k): float(v) for k, v in raw.items()}


def dead_letter_id(event_id: str, digest: str, index: int | str) -> str:
    return hashlib.blake2b(f"{event_id}:{digest}:{index}".encode(), digest_size=8).hexdigest()


class RedisLinkStore:
    """`LinkStore` in Redis: the target id created for (source entity, rule, step), one key each.

    Each link lives `ttl` seconds from its last write: long enough that a later change to the
    same entity updates its record, without keeping links for entities that never change again.
    """

    def __init__(self, client: redis.Redis, key: str, ttl: int) -> None:
        self.r, self.prefix, self.ttl = client, key, ttl

    def get(self, key: str) -> str | None:
        raw = self.r.get(f"{self.prefix}:{key}")
        return None if raw is None else _text(raw)

    def set(self, key: str, value: str) -> None:
        self.r.set(f"{self.prefix}:{key}", value, ex=self.ttl)

    def get_many(self, keys: list[str]) -> list[str | None]:
        """Each key's link, or None (one MGET)."""
        if not keys:
            return []
        return [None if raw is None else _text(raw) for raw in self.r.mget([f"{self.prefix}:{k}" for k in keys])]
