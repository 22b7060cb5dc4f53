"""The last version of each record fieldrelay saw, shared by the webhook path and the pollers.

One Redis string per record, `fieldrelay:entity:<source>:<type>:<id>`, with a TTL. It holds:
- `record`: the record's fields as last seen (volatile fields such as `updated` left out), within a
  size bound: past it the largest fields are dropped, and only a digest of each is kept (`sums`): their
  values are unknown, but whether they changed is not;
- `version_at`: the modification time of that version, and `newest`: the newest change time fieldrelay
  has decided for the record (the ordering state: older events are stale; pollers reconcile against it);
- `event_id`, `via`, `action`: the event that brought the version, with the old values of the fields it
  changed (`before`), so a redelivery of that event compares against what came before it.

Writes are compare-and-set on a token kept in front of the value: two events of one record evaluated
at once cannot both claim the same transition.

    store = EntityStore(redis_client, ttl=30 * 86400, max_bytes=16384)
    version = store.read("servicetrade", "appointment", 754)
    store.write("servicetrade", "appointment", 754, version.after(...), expect=version.token)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import redis

PREFIX = "fieldrelay:entity"
TOKEN_LENGTH = 16  # hex characters of the compare-and-set token in front of each value

# Fields that change on every save and say nothing about what changed (the pollers' defaults too).
VOLATILE_FIELDS: dict[str, tuple[str, ...]] = {
    "servicetrade": ("updated", "distance"),
    "synchroteam": ("dateModified",),
    "synergist": (
        "activityTimeStampModified",
        "activityRecordVersionNumber",
        "jobTimeStampModified",
        "jobRecommendedVersionNumber",
    ),
}
# The record's own modification time, where a fetched record carries one as Unix seconds.
MODIFIED_FIELD = {"servicetrade": "updated"}

# KEYS[1] the record's key; ARGV: expected token ('' = nothing stored), the new value, the TTL.
_COMPARE_AND_SET = f"""
local current = redis.call('GET', KEYS[1])
local token = ''
if current then token = string.sub(current, 1, {TOKEN_LENGTH}) end
if token ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""


def canonical(value: Any) -> bytes:
    """Equality of field values: key order inside nested objects is not a change."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str)


def digest(value: Any) -> str:
    """Of a whole record, or of one field's value: equal digests, equal values (as `canonical` compares)."""
    return hashlib.blake2b(canonical(value), digest_size=12).hexdigest()


def comparable(record: Mapping[str, Any], ignore: Iterable[str]) -> dict[str, Any]:
    """The record without its volatile fields (`updated`, `dateModified`, version numbers...)."""
    skip = set(ignore)
    return {k: v for k, v in record.items() if k not in skip}


def lookup(record: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    """Dotted lookup (`source.status`); (found, value)."""
    if name in record:
        return True, record[name]
    value: Any = record
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def bounded(record: Mapping[str, Any], max_bytes: int) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The record within `max_bytes` of JSON: the largest fields are dropped first, and named.

    Rules mostly read small fields (status, type, ids); what goes first is the long text and the
    embedded lists (notes, service requests, locations).
    """
    kept = dict(record)
    if len(orjson.dumps(kept, default=str)) <= max_bytes:
        return kept, ()
    sizes = sorted(((len(orjson.dumps(v, default=str)), k) for k, v in kept.items()), reverse=True)
    dropped = []
    for _, name in sizes:
        del kept[name]
        dropped.append(name)
        if len(orjson.dumps(kept, default=str)) <= max_bytes:
            break
    return kept, tuple(sorted(dropped))


@dataclass(frozen=True)
class EntityVersion:
    """What fieldrelay knows of one record; `EntityVersion()` is "nothing yet".

    A field is known when it is in `record` and not in `dropped`. `partial` records hold only the
    values webhook changesets reported; every other field is unknown there. A dropped field keeps the
    digest of its value in `sums`, so a later value can still be told equal or not (`unchanged`).
    """

    record: dict[str, Any] | None = None
    partial: bool = False
    dropped: tuple[str, ...] = ()
    sums: dict[str, str] = field(default_factory=dict)  # dropped field -> digest of its value
    digest: str | None = None  # of the whole comparable record; None when partial or patched
    version_at: int | None = None
    newest: int | None = None
    event_id: str | None = None
    via: str | None = None
    action: str | None = None
    # The version before `event_id`: the old values of the fields it changed, the fields unknown then,
    # or `first` when there was no earlier version at all.
    before: dict[str, Any] = field(default_factory=dict)
    before_sums: dict[str, str] = field(default_factory=dict)  # the same, for dropped fields: old digests
    unknown_before: tuple[str, ...] = ()
    first: bool = False
    deleted: bool = False
    absent: bool = False  # pollers: exists, but outside what a full scan lists
    entity_id: int | str | None = None  # the id as the source types it (keys hold its text)
    polled: bool = False  # a poller has listed this version (one a webhook event stored is counted once)
    token: str = ""  # of the stored value; "" when nothing is stored

    @property
    def known(self) -> bool:
        """Some field values are known (not just the ordering state)."""
        return self.record is not None

    def field(self, name: str) -> tuple[bool, Any]:
        """(known, value) of a field, dotted names included."""
        if self.record is None or name.split(".")[0] in self.dropped:
            return False, None
        return lookup(self.record, name)

    def sum_of(self, name: str) -> str | None:
        """The digest of a top-level field's value, known or dropped; None when it is unknown."""
        if name in self.sums:
            return self.sums[name]
        known, value = self.field(name)
        return digest(value) if known and "." not in name else None

    def unchanged(self, name: str, current: Mapping[str, Any]) -> bool:
        """Whether `name` (dotted or not) of the `current` record is provably as it was in this version, for a
        field whose value was too large to keep: its top-level field's digest is the same."""
        top = name.partition(".")[0]
        kept = self.sums.get(top)
        return kept is not None and top in current and digest(current[top]) == kept

    def previous(self) -> EntityVersion | None:
        """The version before `event_id` brought this one; None when there was none (first sighting)."""
        if self.first or self.record is None:
            return None
        record = {k: v for k, v in self.record.items() if k not in self.unknown_before}
        record.update(self.before)
        partial = self.partial or bool(self.unknown_before)
        sums = {k: v for k, v in {**self.sums, **self.before_sums}.items() if k not in self.unknown_before}
        return EntityVersion(record, partial, self.dropped, sums, None, None, self.newest)

    def as_seen_by(self, event_id: str) -> EntityVersion | None:
        """The version an event is compared with: for the event that wrote this one (a redelivery, or a
        poll event whose snapshot the poller wrote first) the one before it; else this one."""
        if self.event_id == event_id:
            return self.previous()
        return self if self.record is not None else None

    def ordering_time(self) -> int | None:
        """Events older than this are stale: a newer change was decided, or a newer version is stored."""
        times = [t for t in (self.newest, self.version_at) if t is not None]
        return max(times) if times else None

    def encode(self) -> bytes:
        data: dict[str, Any] = {"n": self.newest}
        if self.record is not None:
            data.update(r=self.record, t=self.version_at, h=self.digest)
        optional = {
            "p": self.partial,
            "x": list(self.dropped),
            "xs": self.sums,
            "xo": self.before_sums,
            "e": self.event_id,
            "v": self.via,
            "k": self.action,
            "o": self.before,
            "u": list(self.unknown_before),
            "f": self.first,
            "d": self.deleted,
            "a": self.absent,
            "i": self.entity_id,
            "s": self.polled,
        }
        data.update({k: v for k, v in optional.items() if v})
        body = orjson.dumps(data, default=str)
        token = hashlib.blake2b(body, digest_size=TOKEN_LENGTH // 2).hexdigest()
        return token.encode() + body

    @classmethod
    def decode(cls, raw: bytes | None) -> EntityVersion:
        if raw is None:
            return cls()
        token, data = raw[:TOKEN_LENGTH].decode(), orjson.loads(raw[TOKEN_LENGTH:])
        return cls(
            record=data.get("r"),
            partial=bool(data.get("p")),
            dropped=tuple(data.get("x") or ()),
            sums=dict(data.get("xs") or {}),
            before_sums=dict(data.get("xo") or {}),
            digest=data.get("h"),
            version_at=data.get("t"),
            newest=data.get("n"),
            event_id=data.get("e"),
            via=data.get("v"),
            action=data.get("k"),
            before=dict(data.get("o") or {}),
            unknown_before=tuple(data.get("u") or ()),
            first=bool(data.get("f")),
            deleted=bool(data.get("d")),
            absent=bool(data.get("a")),
            entity_id=data.get("i"),
            polled=bool(data.get("s")),
            token=token,
        )


def successor(
    stored: EntityVersion,
    record: Mapping[str, Any] | None,
    *,
    at: int,
    event_id: str | None,
    via: str,
    action: str,
    max_bytes: int,
    decided: bool,
    patch: bool = False,
    deleted: bool = False,
) -> EntityVersion:
    """The version after `event_id` showed `record` (whole, or with `patch` only the fields it names),
    remembering what the changed fields were before, so that event can be compared again.

    `decided`: the event's rules have run (the webhook path), so `newest` moves to `at`; a poller
    writes its snapshot before its event is evaluated and leaves `newest` alone.
    """
    newest = max(at, stored.newest or at) if decided else stored.newest
    if record is None:
        return replace(stored, newest=newest, token="")
    previous = stored if stored.record is not None else None
    base = dict(previous.record or {}) if (patch and previous is not None) else {}
    merged = {**base, **record} if patch else dict(record)
    kept, dropped = bounded(merged, max_bytes)
    sums = {name: digest(merged[name]) for name in dropped}
    before: dict[str, Any] = {}
    before_sums: dict[str, str] = {}
    unknown: list[str] = []
    if previous is not None:
        for name in kept:
            found, old = previous.field(name)
            if not found:
                # Hashed only for a field dropped before (a partial record's unknown fields are not).
                once_dropped = previous.sums.get(name)
                if once_dropped is None or once_dropped != digest(kept[name]):
                    unknown.append(name)
            elif canonical(old) != canonical(kept[name]):
                before[name] = old
        for name in dropped:
            old_sum = previous.sum_of(name)
            if old_sum is None:
                unknown.append(name)
            elif old_sum != sums[name]:
                before_sums[name] = old_sum
        if not patch:  # a field the record no longer has
            before.update({k: v for k, v in (previous.record or {}).items() if k not in merged})
        # The old values are bounded too (a quarter of the record's bound); one left out counts as
        # unknown before this event, should the event be evaluated again.
        before, cut = bounded(before, max(256, max_bytes // 4))
        unknown += cut
    return EntityVersion(
        record=kept,
        partial=patch and (previous is None or previous.partial),
        dropped=dropped,
        sums=sums,
        digest=None if patch else digest(merged),  # of the whole record, so pollers compare it bounded or not
        version_at=max(at, stored.version_at or at) if patch else at,
        newest=newest,
        event_id=event_id,
        via=via,
        action=action,
        before=before,
        before_sums=before_sums,
        unknown_before=tuple(sorted(unknown)),
        first=previous is None,
        deleted=deleted,
        entity_id=stored.entity_id,
    )


class EntityStore:
    """Every record's last seen version, in Redis with a TTL and a size bound per record.

    Memory per record is at most `max_bytes` of fields, a quarter of that of old values, and a few hundred
    bytes of bookkeeping; records nobody changed for `ttl` seconds are forgotten (their next change is a
    first sighting again).
    """

    def __init__(self, client: redis.Redis, *, ttl: int, max_bytes: int) -> None:
        self.r, self.ttl, self.max_bytes = client, ttl, max_bytes
        self._cas = client.register_script(_COMPARE_AND_SET)

    @staticmethod
    def key(source: str, entity_type: str, entity_id: int | str) -> str:
        return f"{PREFIX}:{source}:{entity_type}:{entity_id}"

    def read(self, source: str, entity_type: str, entity_id: int | str) -> EntityVersion:
        raw = self.r.get(self.key(source, entity_type, entity_id))
        return EntityVersion.decode(raw)  # type: ignore[arg-type]

    def read_many(self, source: str, entity_type: str, ids: list[str]) -> dict[str, EntityVersion]:
        """The stored versions of `ids` (one MGET); ids with nothing stored are left out."""
        if not ids:
            return {}
        raws = self.r.mget([self.key(source, entity_type, i) for i in ids])
        return {i: EntityVersion.decode(raw) for i, raw in zip(ids, raws, strict=True) if raw is not None}  # type: ignore[arg-type]

    def write(
        self, source: str, entity_type: str, entity_id: int | str, version: EntityVersion, *, expect: str
    ) -> bool:
        """Store `version` if the stored one still has the token `expect`; False if another writer came first."""
        key = self.key(source, entity_type, entity_id)
        return bool(self._cas(keys=[key], args=[expect, version.encode(), self.ttl]))

    def write_many(self, source: str, entity_type: str, versions: Mapping[str, tuple[EntityVersion, str]]) -> set[str]:
        """Compare-and-set each id's version in one round trip; returns the ids written."""
        if not versions:
            return set()
        pipe = self.r.pipeline(transaction=False)
        ids = list(versions)
        for rid in ids:
            version, expect = versions[rid]
            self._cas(keys=[self.key(source, entity_type, rid)], args=[expect, version.encode(), self.ttl], client=pipe)
        return {rid for rid, ok in zip(ids, pipe.execute(), strict=True) if ok}

    def touch_many(self, source: str, entity_type: str, ids: Iterable[str]) -> None:
        """Start the TTL again for records read unchanged (a full scan lists them every run)."""
        pipe = self.r.pipeline(transaction=False)
        for rid in ids:
            pipe.expire(self.key(source, entity_type, rid), self.ttl)
        pipe.execute()


MIGRATED_KEY = f"{PREFIX}:migrated"


def migrate_legacy_state(client: redis.Redis, store: EntityStore) -> int:
    """Move the state kept before this store existed into it, once per Redis (the first worker to start).

    Before: pollers kept `fieldrelay:poll:snap:<system>.<entity>` (hash id -> `{h, r, t, i, d, a}`) and the
    pipeline `fieldrelay:seen:<source>:<type>` (hash id -> newest change time). Without this, the first poll
    after an upgrade would find no snapshot and report every listed record again. Versions already in the
    store are left alone; the old hashes are deleted once moved. Returns how many records were moved.
    """
    if not client.set(MIGRATED_KEY, "running", nx=True, ex=3600):
        return 0
    moved = 0
    seen: dict[tuple[str, str], dict[str, int]] = {}
    for key in client.scan_iter(match="fieldrelay:seen:*", count=500):
        _, _, source, kind = _text(key).split(":", 3)
        seen[(source, kind)] = {_text(k): int(v) for k, v in client.hgetall(key).items()}
    for key in client.scan_iter(match="fieldrelay:poll:snap:*", count=500):
        poller = _text(key).rsplit(":", 1)[1]
        source, _, kind = poller.partition(".")
        newest = seen.pop((source, kind), {})
        versions: dict[str, tuple[EntityVersion, str]] = {}
        for rid, raw in client.hgetall(key).items():
            data = orjson.loads(raw)
            rid = _text(rid)
            versions[rid] = (
                EntityVersion(
                    record=data.get("r"),
                    digest=data.get("h"),
                    version_at=data.get("t"),
                    newest=newest.pop(rid, None),
                    deleted=bool(data.get("d")),
                    absent=bool(data.get("a")),
                    entity_id=data.get("i", rid),
                    polled=True,
                ),
                "",
            )
        written = store.write_many(source, kind, versions)
        if written and source != "servicetrade":  # ServiceTrade pollers never scan in full: no id list
            client.sadd(f"fieldrelay:poll:ids:{poller}", *written)
        moved += len(written)
        if newest:
            seen[(source, kind)] = newest
        client.delete(key)
    for (source, kind), times in seen.items():
        versions = {rid: (EntityVersion(newest=at), "") for rid, at in times.items()}
        moved += len(store.write_many(source, kind, versions))
        client.delete(f"fieldrelay:seen:{source}:{kind}")
    client.set(MIGRATED_KEY, "done")
    return moved


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
