"""How ServiceTrade records look on the wire: embedded objects, absolute uris and timestamps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.servicetrade_store import ServiceTradeState

AVATAR = {
    "small": "https://servicetrade.com/image/avatar-small.png",
    "medium": "https://servicetrade.com/image/avatar-medium.png",
    "large": "https://servicetrade.com/image/avatar-large.png",
}
# Stored records keep foreign keys as ids; responses embed the short form of the referenced record.
REFERENCES: dict[str, tuple[str, str]] = {
    "companyId": ("company", "company"),
    "customerId": ("customer", "company"),
    "vendorId": ("vendor", "company"),
    "locationId": ("location", "location"),
    "ownerId": ("owner", "user"),
    "salesId": ("sales", "user"),
    "jobId": ("job", "job"),
    "primaryContactId": ("primaryContact", "contact"),
    "techIds": ("techs", "user"),
    "authorId": ("author", "user"),
    "assignedOfficeId": ("assignedOffice", "location"),
}
# The "Embedded Object Reference" section of the docs lists these fields for each short form.
EMBEDDED: dict[str, tuple[str, ...]] = {
    "company": ("id", "uri", "name", "status"),
    "location": (
        "id",
        "uri",
        "legacyId",
        "name",
        "lat",
        "lon",
        "phoneNumber",
        "email",
        "primaryContactId",
        "address",
        "taxable",
        "status",
    ),
    "user": ("id", "uri", "name", "email", "status", "avatar", "isTech", "isHelper"),
    "contact": ("id", "uri", "firstName", "lastName", "type", "phone", "mobile", "alternatePhone", "email"),
    "job": ("id", "uri", "name", "number", "type", "primaryContactId"),
    "appointment": ("id", "uri", "name"),
    "invoice": ("id", "uri", "name"),
    "quote": ("id", "uri", "name", "status"),
    "deficiency": ("id", "uri", "name", "description"),
    "asset": ("id", "uri", "name"),
    "servicerequest": ("id", "uri", "description"),
}
# Entity type constants from the docs, for attachments and comments that point at any record.
TYPE_CODES = {
    2: "asset",
    3: "job",
    4: "user",
    5: "company",
    6: "invoice",
    9: "quote",
    10: "deficiency",
    11: "location",
    16: "appointment",
    18: "servicerequest",
    22: "contact",
}
OPEN_APPOINTMENT = {"scheduled", "unscheduled"}


class Renderer:
    """Turns stored records into response objects whose uris start at the caller's base URL."""

    def __init__(self, state: ServiceTradeState, base: str) -> None:
        self.state = state
        self.base = base

    def uri(self, entity_type: str, entity_id: int) -> str:
        return f"{self.base}/{entity_type}/{entity_id}"

    def embed(self, entity_type: str, entity_id: Any, depth: int = 1) -> dict[str, Any] | None:
        record = self.state.get(entity_type, entity_id) if entity_id is not None else None
        if record is None:
            return None
        fields = EMBEDDED.get(entity_type, ("id", "uri"))
        return self._expand(entity_type, {k: v for k, v in record.items() if k in fields}, depth - 1, fields)

    def full(self, entity_type: str, record: dict[str, Any]) -> dict[str, Any]:
        out = self._expand(entity_type, dict(record), 1, None)
        if entity_type == "job":
            out.update(self._job_extras(record))
        if entity_type in {"attachment", "comment"}:
            target = TYPE_CODES.get(record.get("entityType", 0), "job")
            out["entity"] = {
                "id": record.get("entityId"),
                "uri": self.uri(target, record.get("entityId", 0)),
                "type": record.get("entityType"),
            }
            out.pop("entityId", None)
            out.pop("entityType", None)
        return out

    def _expand(
        self, entity_type: str, values: dict[str, Any], depth: int, fields: tuple[str, ...] | None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"uri": self.uri(entity_type, values["id"])} if "id" in values else {}
        for key, value in values.items():
            if key in REFERENCES:
                name, target = REFERENCES[key]
                if depth < 0:
                    continue
                if isinstance(value, list):
                    out[name] = [e for e in (self.embed(target, v, depth) for v in value) if e is not None]
                else:
                    out[name] = self.embed(target, value, depth)
            else:
                out[key] = value
        if entity_type == "user" and (fields is None or "avatar" in fields):
            out["avatar"] = AVATAR
        return out

    def _job_extras(self, record: dict[str, Any]) -> dict[str, Any]:
        appointments = [a for a in self.state.all("appointment") if a.get("jobId") == record["id"]]
        open_ones = sorted(
            (a for a in appointments if a["status"] in OPEN_APPOINTMENT and a.get("windowStart")),
            key=lambda a: a["windowStart"],
        )
        current = open_ones[-1] if open_ones else None
        office = self.embed("location", record.get("assignedOfficeId"))
        return {
            "offices": [office] if office else [],
            "terms": record.get("terms"),
            "contract": record.get("contract"),
            "assignedOffice": office,
            "scheduledDate": current["windowStart"] if current else None,
            "currentAppointment": (
                {
                    **(self.embed("appointment", current["id"]) or {}),
                    "status": current["status"],
                    "released": current.get("released", True),
                    "techs": [self.embed("user", t) for t in current.get("techIds", [])],
                }
                if current
                else None
            ),
            "latestClockIn": None,
            "ivrOpen": False,
            "ivrActivity": None,
        }
