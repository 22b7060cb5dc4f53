"""Which pollers run and how: a built-in catalog, the FIELDRELAY_POLL_* settings, and an optional YAML file.

```yaml
# FIELDRELAY_POLL_CONFIG, e.g. rules/pollers.yaml (beside the rules dir, not in it: every YAML file
# there is loaded as rules)
defaults: {interval: 60, overlap: 120}
pollers:
  servicetrade.job: {interval: 30}
  synchroteam.activity: {enabled: false}
  synergist.activity: {full_scan_every: 5}
```
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from fieldrelay.entitystate import VOLATILE_FIELDS
from fieldrelay.settings import Settings, parse_poll_start

# (system, entity) -> options; fields in `ignore` change on every save and say nothing about the change.
CATALOG: dict[str, dict[str, Any]] = {
    **{
        f"servicetrade.{e}": {}
        for e in (
            "job",
            "appointment",
            "location",
            "company",
            "contact",
            "invoice",
            "quote",
            "deficiency",
            "asset",
            "servicerequest",
            "user",
        )
    },
    # Seed 002, "Clockin/Clockout": no `updated` filter; `GET /clock` needs one (`startTime`/`endTime`).
    # Off unless FIELDRELAY_POLL_SOURCES names it: without a user filter it reads every technician's events.
    "servicetrade.clock": {"days_back": 30, "opt_in": True},
    "synchroteam.job": {"show_deleted": True},
    "synchroteam.customer": {},
    "synchroteam.site": {},
    "synchroteam.equipment": {},
    "synchroteam.activity": {"days_back": 30, "days_ahead": 90},
    "synergist.activity": {"full_scan_every": 10},
    "synergist.job": {"full_scan_every": 10},
}
IGNORED_FIELDS = VOLATILE_FIELDS  # one list for the pollers and the webhook path (fieldrelay.entitystate)
KNOWN_KEYS = {
    "enabled",
    "interval",
    "overlap",
    "start",
    "lease",
    "webhook_grace",
    "ignore_fields",
    "page_size",
    "show_deleted",
    "days_back",
    "days_ahead",
    "full_scan_every",
    "filters",
    "reserve",
    "view",
}


class PollConfigError(Exception):
    """The poller YAML file is unreadable or names an unknown poller or option."""


@dataclass(frozen=True)
class PollerSpec:
    """One poller: `servicetrade.job` polls ServiceTrade jobs every `interval` seconds.

    `overlap` seconds of the previous window are read again on every run; `start` is where the very
    first run begins (None: now); `lease` bounds how long a stuck run keeps the lock.
    """

    system: str
    entity: str
    interval: float = 60.0
    overlap: int = 120
    start: int | None = None
    lease: int = 300
    webhook_grace: int = 60
    ignore_fields: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.system}.{self.entity}"


def configured_systems(settings: Settings) -> set[str]:
    """Systems whose credentials are set: the pollers that run when FIELDRELAY_POLL_SOURCES is unset."""
    systems = set()
    if settings.servicetrade_username:
        systems.add("servicetrade")
    if settings.synchroteam_domain:
        systems.add("synchroteam")
    if settings.synergist_base_url and settings.synergist_user:
        systems.add("synergist")
    return systems


def load_pollers(settings: Settings) -> list[PollerSpec]:
    """Every enabled poller: the catalog, narrowed by FIELDRELAY_POLL_SOURCES, tuned by the YAML file."""
    chosen = [s.strip() for s in settings.poll_sources if s.strip()]
    if chosen == ["none"]:
        return []
    known = {*CATALOG, *(name.split(".")[0] for name in CATALOG)}
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise PollConfigError(
            f"FIELDRELAY_POLL_SOURCES: unknown poller {unknown[0]!r}; known: "
            f"{', '.join(sorted({n.split('.')[0] for n in CATALOG}))} or one of {', '.join(CATALOG)}"
        )
    wanted = set(chosen) or configured_systems(settings)
    base = PollerSpec(
        "",
        "",
        interval=settings.poll_interval,
        overlap=settings.poll_overlap,
        start=parse_poll_start(settings.poll_start),
        lease=settings.poll_lease,
        webhook_grace=settings.poll_webhook_grace,
    )
    overrides = _read_yaml(settings.poll_config) if settings.poll_config else {}
    defaults = overrides.get("defaults") or {}
    specs = []
    for name, options in CATALOG.items():
        system, entity = name.split(".")
        tuned = {**defaults, **(overrides.get("pollers") or {}).get(name, {})}
        by_system = system in wanted and not options.get("opt_in")
        enabled = tuned.pop("enabled", name in wanted or by_system)
        if not enabled:
            continue
        kept = {k: v for k, v in options.items() if k != "opt_in"}
        spec = replace(base, system=system, entity=entity, ignore_fields=IGNORED_FIELDS[system], options=kept)
        specs.append(_tune(spec, tuned))
    return specs


def _tune(spec: PollerSpec, tuned: dict[str, Any]) -> PollerSpec:
    unknown = set(tuned) - KNOWN_KEYS
    if unknown:
        raise PollConfigError(f"{spec.name}: unknown option(s) {', '.join(sorted(unknown))}")
    plain: dict[str, Any] = {k: tuned.pop(k) for k in ("interval", "overlap", "lease", "webhook_grace") if k in tuned}
    if "start" in tuned:
        plain["start"] = parse_poll_start(tuned.pop("start"))
    if "ignore_fields" in tuned:
        plain["ignore_fields"] = (*spec.ignore_fields, *tuned.pop("ignore_fields"))
    return replace(spec, **plain, options={**spec.options, **tuned})


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = YAML(typ="safe").load(Path(path).read_text())
    except (OSError, YAMLError) as exc:
        raise PollConfigError(f"{path}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or set(data) - {"defaults", "pollers"}:
        raise PollConfigError(f"{path}: expected a mapping with `defaults` and/or `pollers`")
    for name in data.get("pollers") or {}:
        if name not in CATALOG:
            raise PollConfigError(f"{path}: unknown poller {name!r}; known: {', '.join(CATALOG)}")
    return data
