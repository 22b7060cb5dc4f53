"""Redis memory per in-flight event and per retained event (its trace and the rest of its state).

In-flight: N webhooks' `process_event` messages, written as the receiver writes them, waiting in the events
queue. Retained: N events run through the pipeline as a worker runs them (a rule with one `http.request`
POST to a local sink, run inline), then what Redis keeps of them for the retention period: the event, its
trace, claim, ledger, step results, console summary and index entry, and the entity's last seen version.
Each figure is the growth of `INFO memory` `used_memory` over N, and one event's keys by `MEMORY USAGE`.

    .venv/bin/python bench/redis_memory.py [--events 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pipeline_throughput import ONE_ACTION, webhook  # noqa: E402
from fieldrelay_cli.embedded_redis import EmbeddedRedis, free_port  # noqa: E402


def used(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    n = args.events
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis", appendonly=False) as server:
        port = free_port()
        sink = subprocess.Popen([sys.executable, str(ROOT / "bench" / "sink.py"), str(port)])
        try:
            rules = Path(tmp) / "rules"
            rules.mkdir()
            (rules / "bench.yaml").write_text(ONE_ACTION.format(sink=f"http://127.0.0.1:{port}"))
            os.environ.update(
                FIELDRELAY_REDIS_URL=server.url,
                FIELDRELAY_RULES_DIR=str(rules),
                FIELDRELAY_HTTP_ALLOWED_HOSTS=f"127.0.0.1:{port}",
                FIELDRELAY_POLL_SOURCES="none",
            )
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/count", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.05)
            measure(redis.Redis.from_url(server.url), n)
        finally:
            sink.terminate()
            sink.wait()


def measure(r: redis.Redis, n: int) -> None:
    # Imported once the settings are in the environment: the Celery app reads them at import.
    from fieldrelay.events import ChangeEvent
    from receiver.publisher import event_messages
    from receiver.webhooks import normalize, parse_message
    from workers import pipeline
    from workers.inline import InlineAction
    from workers.process import runtime

    rt = runtime()
    at = int(time.time())
    events = [normalize(parse_message(json.dumps(webhook(2_000_000 + i, at)).encode()))[0] for i in range(n)]

    before = used(r)
    pipe = r.pipeline(transaction=False)
    for event in events:
        pipe.lpush("bench-events", *event_messages([event], "bench-events"))
    pipe.execute()
    queued = (used(r) - before) / n
    r.delete("bench-events")

    def run(event: dict[str, object]) -> None:
        first = InlineAction(frozenset({"actions.http"}), rt.enqueue_action)
        with rt.state.batched():
            pipeline.process_event(ChangeEvent.model_validate(event), str(uuid.uuid4()), rt, start=first)
        assert first.taken is not None, "the bench rule did not match"
        event_id, digest, _ = first.taken
        with rt.state.batched():
            pipeline.run_action(event_id, digest, 0, rt, owner="bench", saved=rt.state.just_saved(event_id))

    run(events[0])  # the rule, the metrics hashes and the index exist before the count starts
    before = used(r)
    for event in events[1:]:
        run(event)
    retained = (used(r) - before) / (n - 1)

    sample = events[-1]
    event_id = ChangeEvent.model_validate(sample).id
    keys = sorted(k.decode() for k in r.scan_iter(match=f"*{event_id}*"))
    entity = sample["entity"]
    assert isinstance(entity, dict)
    keys.append(rt.state.entities.key("servicetrade", "job", str(entity["id"])))
    sizes = {k: int(r.memory_usage(k) or 0) for k in keys}
    print(f"{n} events, one job webhook each; one rule with one http.request POST (run inline)")
    print(f"  in flight (a process_event message waiting in its queue): {queued:,.0f} bytes per event")
    print(f"  retained after the run (used_memory growth): {retained:,.0f} bytes per event")
    print("  one event's keys (MEMORY USAGE, bytes):")
    for key, size in sizes.items():
        print(f"    {size:6,}  {key.replace(event_id, '<event id>')}")
    print(f"    {sum(sizes.values()):6,}  in all, plus its entry in the console's index (fieldrelay:events)")
    print(f"  trace entries of that event: {r.llen(rt.state.key('trace', event_id))}")


if __name__ == "__main__":
    main()
