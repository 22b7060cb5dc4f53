"""Redis commands, fetches and memory per event that the entity state store costs, from INFO commandstats.

    .venv/bin/python bench/entity_state_commands.py [--events N]

`workers.pipeline.process_event` runs against two private Redis servers (the embedded server): one holds
everything the pipeline keeps, the other only the entity state store (`PipelineState.entities`). So
`INFO commandstats` of the second, reset before each scenario, is exactly what the store costs, commands
called inside its Lua script included; the first shows the rest of the pipeline for scale. ServiceTrade and
Synchroteam answer in-process (httpx.MockTransport), and every ServiceTrade read is counted. The design
the store replaced spent 2 commands per event on ordering (HGET fieldrelay:seen, then an EVALSHA whose
script ran HGET and HSET) and kept no record versions; the pollers' snapshots were a hash per poller.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fieldrelay.events import ChangeEvent, EntityRef, FieldChange
from fieldrelay.settings import Settings
from fieldrelay.state import PipelineState
from fieldrelay.targets import target_limits
from fieldrelay_cli.embedded_redis import EmbeddedRedis
from workers import pipeline
from workers.actions.registry import action_params
from workers.clients import SettingsClients
from workers.echo import EchoGuard
from workers.gate import TargetGate
from workers.polling.config import PollerSpec
from workers.polling.record import Record
from workers.polling.runner import Poller
from workers.polling.store import PollStore
from workers.rulebook import RuleBook
from workers.runs import RunCoordinator
from workers.runtime import Runtime

RULES = """
rules:
  - name: job-status
    mode: parallel
    when: {source: servicetrade, entity: job, action: updated, changed: {status: {to: completed}}}
    then: [{synchroteam.customer.upsert: {myId: "job-{{ event.entity.id }}", name: x}}]
  - name: job-status-reads-the-job
    mode: parallel
    when: {source: servicetrade, entity: invoice, action: updated, changed: {status: {to: paid}}}
    if: "entity.type == 'invoice'"
    then: [{synchroteam.customer.upsert: {myId: "inv-{{ event.entity.id }}", name: x}}]
  - name: appointment-status
    mode: parallel
    when: {source: servicetrade, entity: appointment, action: updated, changed: {status: {to: completed}}}
    then: [{synchroteam.customer.upsert: {myId: "appt-{{ event.entity.id }}", name: x}}]
"""
# A ServiceTrade job as the doc shows it (GET /job/13, abridged): about 2.5 KB of JSON.
JOB = json.loads((Path(__file__).resolve().parents[1] / "examples" / "job-35769.json").read_text())


class ServiceTrade:
    def __init__(self) -> None:
        self.reads = 0
        self.status: dict[str, str] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/auth":
            return httpx.Response(200, json={"data": {"authToken": "t"}})
        if path.endswith("/send"):
            return httpx.Response(200, json={"id": 1})
        self.reads += 1
        kind, rid = path.split("/")[-2:]
        record = {**JOB, "id": int(rid), "type": kind, "status": self.status.get(kind, "completed"), "updated": 1}
        return httpx.Response(200, json={"data": record})


def runtime(state: PipelineState, rules: Path, api: ServiceTrade) -> Runtime:
    settings = Settings(servicetrade_base_url="http://st.test/api", synchroteam_base_url="http://stm.test")
    r = state.r
    return Runtime(
        state=state,
        clients=SettingsClients(settings, transport=httpx.MockTransport(api)),
        rulebook=RuleBook(rules, action_params()),
        enqueue_action=lambda *args: None,
        gate=TargetGate(r, target_limits(settings)),
        targets=target_limits(settings),
        runs=RunCoordinator(r),
        echoes=EchoGuard(r),
        schedule=lambda *args: None,
    )


def commandstats(client: redis.Redis) -> Counter[str]:
    stats = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


def measure(label: str, pipe_redis: redis.Redis, store_redis: redis.Redis, run: Callable[[], int]) -> dict[str, Any]:
    for client in (pipe_redis, store_redis):
        client.config_resetstat()
    n = run()
    store, rest = commandstats(store_redis), commandstats(pipe_redis)
    store.pop("config", None)
    rest.pop("config", None)
    return {"label": label, "n": n, "store": store, "rest": rest}


def show(result: dict[str, Any], fetches: float, unit: str = "event") -> None:
    n = result["n"]
    store: Counter[str] = result["store"]
    # Each EVALSHA is the compare-and-set script, which runs one GET and, when it wins, one SET: Redis
    # counts those under `get` and `set`. Sent by the client: everything but those.
    if "hset" in store or "hget" in store:  # the replaced design's script ran HGET (and HSET)
        in_scripts = store["evalsha"] + store["hset"]
        sent = {k: v for k, v in store.items() if k != "hset"}
        sent["hget"] = store["hget"] - store["evalsha"]
    else:
        in_scripts = store["evalsha"] + store["set"]
        sent = {k: v for k, v in store.items() if k != "set"}
        sent["get"] = store["get"] - store["evalsha"]
    sent = {k: v for k, v in sent.items() if v}
    per = ", ".join(f"{k} {v / n:.3g}" for k, v in sorted(sent.items()))
    print(
        f"{result['label']:<48} store: {sum(sent.values()) / n:.2f} commands/{unit} ({per}; "
        f"+{in_scripts / n:.2f} inside its script)   rest of the pipeline: {sum(result['rest'].values()) / n:5.2f}"
        f"   ServiceTrade reads/event: {fetches:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=400)
    args = parser.parse_args()
    n = args.events
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        servers = [EmbeddedRedis(root / name, appendonly=False).start() for name in ("pipeline", "store")]
        try:
            pipe_redis, store_redis = (redis.Redis.from_url(s.url) for s in servers)
            rules = root / "rules"
            rules.mkdir()
            (rules / "bench.yaml").write_text(RULES)
            state = PipelineState(pipe_redis)
            state.entities = type(state.entities)(store_redis, ttl=30 * 86400, max_bytes=16384)
            api = ServiceTrade()
            rt = runtime(state, rules, api)
            records = 50  # events spread over this many records, each seen several times
            now = int(time.time())

            def events(kind: str, changes: dict[str, FieldChange] | None, start: int) -> Callable[[], int]:
                def run() -> int:
                    api.reads = 0
                    for i in range(n):
                        event = ChangeEvent(
                            source="servicetrade",
                            via="webhook",
                            action="updated",
                            entity=EntityRef(type=kind, id=1000 + i % records),
                            occurred_at=start + i,
                            changes=changes,
                        )
                        pipeline.process_event(event, f"t-{kind}-{start}-{i}", rt)
                    return n

                return run

            status = {"status": FieldChange(old="scheduled", new="completed")}
            paid = {"status": FieldChange(new="paid")}
            scenarios = [
                ("changeset covers the rule's field (job status)", events("job", status, now - 50_000)),
                ("changeset covers it, a rule reads the record", events("invoice", paid, now - 40_000)),
                ("empty changeset: fetch and compare (appointment)", events("appointment", {}, now - 30_000)),
                ("no changeset at all (appointment)", events("appointment", None, now - 20_000)),
                ("no rule listens (attachment)", events("attachment", {}, now - 10_000)),
            ]
            # What the store replaced, on the same server: PipelineState.seen_at + mark_seen as they were.
            old_max = store_redis.register_script(
                "local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1') "
                "if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end"
            )

            def replaced() -> int:
                for i in range(n):
                    store_redis.hget("fieldrelay:seen:servicetrade:job", str(1000 + i % records))
                    old_max(keys=["fieldrelay:seen:servicetrade:job"], args=[str(1000 + i % records), now + i])
                return n

            print(f"{n} events per scenario over {records} records; commands from INFO commandstats\n")
            show(measure("(before: the `seen` hash alone, for comparison)", pipe_redis, store_redis, replaced), 0.0)
            for label, run in scenarios:
                result = measure(label, pipe_redis, store_redis, run)
                show(result, api.reads / n)

            # A poll run: N changed records listed at once.
            store = PollStore(pipe_redis, state.entities)
            spec = PollerSpec(system="servicetrade", entity="job", start=0, ignore_fields=("updated", "distance"))
            rows = [Record(5000 + i, {**JOB, "id": 5000 + i, "status": "scheduled"}, 60_000 + i) for i in range(n)]
            source = _ListedSource(rows)
            poller = Poller(spec, source, store, enqueue=lambda event: None, requests=lambda: 0, reconcile=True)
            first = measure(
                "poll run: every record new to the poller", pipe_redis, store_redis, lambda: poller.run().listed
            )
            rows[:] = [Record(r.id, {**r.data, "status": "completed"}, (r.modified_at or 0) + 10) for r in rows]
            pipe_redis.delete(store.key("last", spec.name))
            second = measure("poll run: every record changed", pipe_redis, store_redis, lambda: poller.run().listed)
            for result in (first, second):
                show(result, 0.0, unit="record")
            key = state.entities.key("servicetrade", "job", 5000)
            print(
                f"\nmemory: one stored job version (the doc's sample job, {len(json.dumps(JOB))} bytes of JSON) "
                f"takes {store_redis.memory_usage(key)} bytes in Redis (MEMORY USAGE), TTL {store_redis.ttl(key)} s"
            )
        finally:
            for server in servers:
                server.stop()


class _ListedSource:
    """A ServiceTrade list that returns the given rows (the bench needs no HTTP for polls)."""

    system, entity, full_only, reconcile, verify_filter = "servicetrade", "job", False, True, False

    def __init__(self, rows: list[Record]) -> None:
        self.rows = rows

    def clock(self) -> int:
        return 10**9

    progress: Any = None  # where a listing stopped (the real sources' resumable mark); a bench list never stops

    def fetch(self, since: int, full: bool, mark: Any = None) -> Any:
        return iter(self.rows)

    def recheck(self, record_id: int | str) -> Record | None:
        return None

    def wait_until(self) -> float | None:
        return None

    def budget(self) -> dict[str, int | None]:
        return {}


if __name__ == "__main__":
    main()
