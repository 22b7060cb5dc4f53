"""What the three source APIs document: entity types per source and known fields per entity."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

SOURCE_TITLES = {"servicetrade": "ServiceTrade", "synchroteam": "Synchroteam", "synergist": "Synergist"}

ENTITY_TYPES: dict[str, tuple[str, ...]] = {
    "servicetrade": (
        "job",
        "appointment",
        "location",
        "company",
        "contact",
        "invoice",
        "quote",
        "quoteitem",
        "quote_item",
        "deficiency",
        "asset",
        "user",
        "attachment",
        "clockevent",
        "clock_event",
        "jobitem",
        "job_item",
        "servicerequest",
    ),
    "synchroteam": ("job", "customer", "site", "equipment", "activity"),
    "synergist": ("activity", "job", "calendar", "timesheet"),
}

_COMMON = ("id", "uri", "created", "updated", "externalIds", "status", "name")

# Fields the API digest (section 1.4) documents; `changed:` on anything else is only a warning,
# because ServiceTrade does not publish the list of tracked fields for most entities.
SERVICETRADE_FIELDS: dict[str, frozenset[str]] = {
    "job": frozenset(
        (
            *_COMMON,
            "type",
            "number",
            "refNumber",
            "customerPo",
            "visibility",
            "description",
            "scheduledDate",
            "estimatedPrice",
            "latestClockIn",
            "ivrOpen",
            "ivrActivity",
            "serviceLine",
            "dueBy",
            "completedOn",
            "currentAppointment",
            "deficienciesFound",
            "otherTradeDeficienciesFound",
            "redTagsFound",
            "vendor",
            "customer",
            "location",
            "owner",
            "sales",
            "primaryContact",
            "notes",
            "serviceRequests",
            "schedulingComments",
            "assignedOffice",
            "offices",
            "tags",
            "terms",
            "contract",
            "budgeted",
            "jobTypeWeight",
            "isInvoiced",
        )
    ),
    "appointment": frozenset(
        (
            *_COMMON,
            "windowStart",
            "windowEnd",
            "location",
            "vendor",
            "dueBy",
            "serviceRequests",
            "job",
            "techs",
            "offices",
            "released",
        )
    ),
    "location": frozenset(
        (
            *_COMMON,
            "refNumber",
            "company",
            "primaryContact",
            "offices",
            "address",
            "lat",
            "lon",
            "phoneNumber",
            "email",
            "taxable",
            "legacyId",
            "generalManager",
        )
    ),
    "company": frozenset((*_COMMON, "refNumber", "customer", "vendor", "tags")),
    "contact": frozenset(
        (
            *_COMMON,
            "firstName",
            "lastName",
            "type",
            "phone",
            "mobile",
            "alternatePhone",
            "email",
            "companies",
            "locations",
        )
    ),
    "invoice": frozenset(
        (
            *_COMMON,
            "invoiceNumber",
            "refNumber",
            "totalPrice",
            "job",
            "customer",
            "vendor",
            "transactionDate",
            "dueDate",
            "type",
        )
    ),
    "quote": frozenset(
        (
            *_COMMON,
            "refNumber",
            "vendor",
            "customer",
            "location",
            "job",
            "description",
            "jobType",
        )
    ),
    "deficiency": frozenset(
        (
            *_COMMON,
            "refNumber",
            "severity",
            "resolution",
            "asset",
            "location",
            "reportingJob",
        )
    ),
    "attachment": frozenset(
        (
            *_COMMON,
            "contentUrl",
            "checksum",
            "fileName",
            "fileType",
            "purposeId",
            "purpose",
            "entity",
        )
    ),
    "servicerequest": frozenset((*_COMMON, "closedOn", "description", "job", "appointment", "location")),
    "jobitem": frozenset(
        (
            *_COMMON,
            "libItemId",
            "quantity",
            "source.companyId",
            "source.deliveryDate",
            "source.status",
            "source.type",
            "source.userId",
            "source.value",
            "source.warehouseId",
        )
    ),
}


# ServiceTrade, "Webhook > Entity Changesets": "Changeset tracking is NOT enabled on all fields on all
# entities"; it lists Job (with no fields in the text) and Job Item. [INCONS] The same section's sample
# carries a job changeset on `status`, so `status` counts as tracked here (the sample's reading). Under
# either reading a field missing from a changeset is compared with the version seen before; this list
# only decides which `changed:` fields `rules check` warns cost a fetch.
SERVICETRADE_TRACKED: dict[str, frozenset[str]] = {
    "job": frozenset({"status"}),
    "jobitem": frozenset(
        {
            "libItemId",
            "quantity",
            "source.companyId",
            "source.deliveryDate",
            "source.status",
            "source.type",
            "source.userId",
            "source.value",
            "source.warehouseId",
        }
    ),
}


def untracked_field(source: str, entity: str, field: str) -> bool:
    """True when ServiceTrade's webhook changesets never report changes of `field` on `entity`."""
    return source == "servicetrade" and field not in SERVICETRADE_TRACKED.get(canonical_entity(entity), ())


def canonical_entity(name: str) -> str:
    """ServiceTrade spells some types both ways (`job_item`, `jobitem`); match on one spelling."""
    return name.replace("_", "").lower()


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`; did you mean 'job'?` or the empty string."""
    choices = [str(c) for c in choices]
    folded = [c for c in choices if c.casefold() == word.casefold()]
    close = folded or difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_entity(source: str, name: str) -> str:
    """The entity name if `source` has it, else a ValueError naming the closest one."""
    known = ENTITY_TYPES[source]
    if name not in known:
        raise ValueError(f"{name!r} is not a {SOURCE_TITLES[source]} entity type{did_you_mean(name, known)}")
    return name


def undocumented_field(source: str, entity: str, field: str) -> bool:
    """True when the API documents fields for this entity and `field` is not among them."""
    if source != "servicetrade":
        return False
    fields = SERVICETRADE_FIELDS.get(canonical_entity(entity))
    if fields is None:
        return False
    return field not in fields and field.split(".")[0] not in fields
