"""Median µs per event for `candidates + evaluate` over N synthetic rules, 10 of which match the event.

    .venv/bin/python bench/rules_matching.py [SIZES...]     # default: 10 100 1000 10000

Half the events are the job update the 10 matching rules want; the rest are spread over every source,
entity and action. The other rules want `status` or `type` to become a value no event has: a job update's
changeset covers `status` (the value index leaves those out), and `type` is read from the record (one read,
then the index leaves those out too). Every size is loaded first, then the sizes take turns, round by
round, so that each size's rounds share the machine's quiet and busy moments. Each size shows its quietest
round's median and, beside it, its noisiest round's; the ratios to the smallest size are printed for both
(the goal: at most 1.3x at 1,000 rules and 2x at 10,000).
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
ROUNDS = 15
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


GOALS = {1000: 1.3, 10000: 2.0}


def main() -> None:
    rng = random.Random(7)
    record = {"id": 1, "type": "repair", "name": "Job 1", "status": "completed"}
    stream = events(rng)
    loaded = []
    for n in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            write_rules(Path(tmp), n, rng)
            started = time.perf_counter()
            ruleset = load_rules(Path(tmp), None)
            loaded.append((n, ruleset, time.perf_counter() - started))
    rounds: dict[int, list[tuple[float, float]]] = {n: [] for n in SIZES}
    judged: dict[int, tuple[int, int]] = {}
    for _ in range(ROUNDS):
        for n, ruleset, _load_s in loaded:
            timings = []
            for event in stream:
                started = time.perf_counter()
                verdicts = evaluate(ruleset, event, lambda: record)
                timings.append((time.perf_counter() - started) * 1e6)
                if event.entity.type == "job" and event.source == "servicetrade" and event.action == "updated":
                    judged[n] = (sum(v.matched for v in verdicts), len(verdicts))
            rounds[n].append((statistics.median(timings), statistics.quantiles(timings, n=20)[-1]))
    print(
        f"{ROUNDS} rounds of {EVENTS} events per size, sizes taking turns; each size's quietest round is shown "
        f"(others share this machine), with its noisiest round's median beside it. "
        f"Load average: {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'rules':>6}  {'load s':>7}  {'median µs/event':>15}  {'p95 µs':>7}  {'worst median':>12}  "
        f"{'matched/job event':>17}  {'judged/job event':>16}"
    )
    for n, _ruleset, load_s in loaded:
        (median, p95), worst = min(rounds[n]), max(m for m, _ in rounds[n])
        matched, seen = judged[n]
        print(f"{n:>6}  {load_s:>7.2f}  {median:>15.1f}  {p95:>7.1f}  {worst:>12.1f}  {matched:>17}  {seen:>16}")
    base = SIZES[0]
    quiet, noisy = min(m for m, _ in rounds[base]), max(m for m, _ in rounds[base])
    for n in SIZES[1:]:
        ratio, worst = min(m for m, _ in rounds[n]) / quiet, max(m for m, _ in rounds[n]) / noisy
        goal = f"  (goal: at most {GOALS[n]}x)" if n in GOALS else ""
        print(f"median at {n} rules / at {base}: {ratio:.2f}x quietest rounds, {worst:.2f}x noisiest{goal}")


if __name__ == "__main__":
    main()
