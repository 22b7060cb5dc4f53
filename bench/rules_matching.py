"""Median µs per event for `candidates + evaluate` over N synthetic rules, 10 of which match the event.

    .venv/bin/python bench/rules_matching.py [SIZES...]     # default: 10 100 1000 10000

Half the events are the job update the 10 matching rules want (they meet those 10 plus every other
rule indexed under servicetrade/job/updated); the rest are spread over every source, entity and action.
Each size runs the whole stream several times and shows the quietest round, because this machine is
shared; the noisiest round's median is printed beside it.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fieldrelay.events import ChangeEvent, EntityRef, FieldChange
from rules import evaluate, load_rules
from rules.catalog import ENTITY_TYPES

MATCHING = 10
EVENTS = 2000
ROUNDS = 5
SIZES = tuple(int(n) for n in sys.argv[1:]) or (10, 100, 1000, 10000)

MATCH_RULE = """\
  - name: match-{i}
    when: {{source: servicetrade, entity: job, action: updated, changed: {{status: {{to: completed}}}}}}
    if: "entity.type in ['repair', 'inspection'] and event.entity.id > {i}"
    then:
      - synchroteam.job.upsert:
          myId: "st-job-{{{{ event.entity.id }}}}"
          description: "{{{{ entity.name }}}}"
"""

OTHER_RULE = """\
  - name: other-{i}
    when: {{source: {source}, entity: {entity}, action: {action}, changed: {{{field}: {{to: x{i}}}}}}}
    if: "entity.id == {i}"
    then:
      - http.request: {{url: "https://example.com/{{{{ event.entity.id }}}}"}}
"""


def write_rules(directory: Path, n: int, rng: random.Random) -> None:
    """10 rules that match the benchmark's job event; the rest spread over every source/entity/action."""
    chunks = [MATCH_RULE.format(i=i) for i in range(min(MATCHING, n))]
    combos = [(s, e) for s, entities in ENTITY_TYPES.items() for e in entities]
    for i in range(n - len(chunks)):
        source, entity = rng.choice(combos)
        field, action = rng.choice(["status", "type"]), rng.choice(["created", "updated", "deleted"])
        chunks.append(OTHER_RULE.format(i=i, source=source, entity=entity, field=field, action=action))
    per_file = 1000
    for start in range(0, len(chunks), per_file):
        text = "rules:\n" + "".join(chunks[start : start + per_file])
        (directory / f"rules_{start // per_file:03}.yaml").write_text(text)


def events(rng: random.Random) -> list[ChangeEvent]:
    """The job-completed event every matching rule wants, with other events mixed in."""
    out = []
    completed = {"status": FieldChange(old="scheduled", new="completed")}
    for i in range(EVENTS):
        if i % 2 == 0:
            source, entity, action = "servicetrade", "job", "updated"
        else:
            source = rng.choice(list(ENTITY_TYPES))
            entity, action = rng.choice(ENTITY_TYPES[source]), rng.choice(["created", "updated", "deleted"])
        out.append(
            ChangeEvent(
                source=source,
                via="webhook",
                action=action,  # type: ignore[arg-type]
                entity=EntityRef(type=entity, id=1000 + i),
                occurred_at=1_700_000_000 + i,
                changes=completed if action == "updated" else None,
            )
        )
    return out


def main() -> None:
    rng = random.Random(7)
    record = {"id": 1, "type": "repair", "name": "Job 1", "status": "completed"}
    stream = events(rng)
    print(
        f"{ROUNDS} rounds of {EVENTS} events; the round with the lowest median is shown (others share this "
        f"machine), with the highest round median beside it. Load average: {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'rules':>6}  {'load s':>7}  {'median µs/event':>15}  {'p95 µs':>7}  {'worst median':>12}  "
        f"{'matched/job event':>17}"
    )
    for n in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            write_rules(Path(tmp), n, rng)
            started = time.perf_counter()
            ruleset = load_rules(Path(tmp), None)
            load_s = time.perf_counter() - started
        rounds, matched = [], 0
        for _ in range(ROUNDS):
            timings = []
            for event in stream:
                started = time.perf_counter()
                verdicts = evaluate(ruleset, event, lambda: record)
                timings.append((time.perf_counter() - started) * 1e6)
                if event.entity.type == "job" and event.source == "servicetrade" and event.action == "updated":
                    matched = sum(v.matched for v in verdicts)
            rounds.append((statistics.median(timings), statistics.quantiles(timings, n=20)[-1]))
        (median, p95), worst = min(rounds), max(m for m, _ in rounds)
        print(f"{n:>6}  {load_s:>7.2f}  {median:>15.1f}  {p95:>7.1f}  {worst:>12.1f}  {matched:>17}")


if __name__ == "__main__":
    main()
