"""What a technician does in the Synchroteam mobile app, as a sandbox control: fill the report, take photos,
clock the time and complete the job. The API itself only reads these (seed 000, "Retrieve a job report",
"Retrieve job photos"); `POST /_sandbox/technician/complete` is how a demo or a test plays the technician.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.recorder import CONTROL_PREFIX
from sandbox.synchroteam_store import JOB_DATE, SHORT_DATE, Invalid, SynchroteamState, parse_date


def tiny_png(rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A valid 1x1 PNG of one colour: the photo a sandbox technician takes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + bytes(rgb))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def default_report(summary: str) -> list[dict[str, Any]]:
    """A report in the shape of seed 000's "The job report object" sample."""
    return [
        {
            "id": 3275,
            "name": "Work done",
            "isShared": False,
            "iteration": 0,
            "isMandatory": True,
            "position": 0,
            "items": [
                {
                    "id": 10363,
                    "type": "text",
                    "name": "Summary",
                    "isMandatory": True,
                    "isPrivate": False,
                    "conditionByItem": 0,
                    "conditionValue": "",
                    "position": 1,
                    "value": summary,
                    "comment": "",
                    "issue": "-",
                },
                {
                    "id": 10364,
                    "type": "list",
                    "name": "Follow-up needed",
                    "isMandatory": False,
                    "isPrivate": False,
                    "conditionByItem": 0,
                    "conditionValue": "",
                    "position": 2,
                    "value": "no",
                    "comment": "",
                    "issue": "Resolved",
                },
            ],
        }
    ]


def complete(st: SynchroteamState, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("job"), dict):
        raise Invalid('body: {"job": {"id"|"myId"|"num": ...}, ...} is required')
    job = st.find("job", {k: v for k, v in body["job"].items() if k in ("id", "myId", "num")})
    if job is None:
        raise Invalid(f"job not found: {body['job']}", 404)
    now = datetime.fromtimestamp(st.clock()).astimezone(st.zone).replace(second=0, microsecond=0, tzinfo=None)
    start = parse_date(body["actualStart"], SHORT_DATE, "actualStart") if body.get("actualStart") else None
    end = parse_date(body["actualEnd"], SHORT_DATE, "actualEnd") if body.get("actualEnd") else None
    begins = start.replace(tzinfo=None) if start else now - timedelta(hours=2)
    ends = end.replace(tzinfo=None) if end else now
    if ends < begins:
        raise Invalid("actualEnd must not be before actualStart")
    technician = job.get("technician") or ({"id": st.users[0]["id"]} if st.users else None)
    job.update(
        status="completed",
        actualStart=begins.strftime(JOB_DATE),
        actualEnd=ends.strftime(JOB_DATE),
        duration=int((ends - begins).total_seconds() // 60),
        technician=technician,
        timeEntries=[{"user": technician, "start": begins.strftime(JOB_DATE), "stop": ends.strftime(JOB_DATE)}],
    )
    summary = str(body.get("summary") or "Work completed; site left clean.")
    st.reports[str(job["id"])] = body.get("report") or default_report(summary)
    photos = body.get("photos")
    if photos is None:
        photos = [{"fileName": "after.png", "comment": "After the work", "iteration": 0}]
    st.photos[str(job["id"])] = [
        {
            "url": f"https://sandbox.synchroteam.com/photos/{job['id']}/{p.get('fileName')}",
            "fileName": p.get("fileName"),
            "iteration": p.get("iteration", 0),
            "comment": p.get("comment", ""),
            "imageData": p.get("imageData") or base64.b64encode(tiny_png()).decode(),
        }
        for p in photos
    ]
    st.touch(job)
    return {"id": job["id"], "myId": job.get("myId"), "status": job["status"], "duration": job["duration"]}


def technician_routes(st: SynchroteamState) -> list[BaseRoute]:
    async def complete_job(request: Request) -> Response:
        try:
            raw = await request.body()
            body = json.loads(raw) if raw else None
            return JSONResponse(complete(st, body))
        except ValueError as exc:
            status = exc.status if isinstance(exc, Invalid) else 400
            message = exc.message if isinstance(exc, Invalid) else f"body is not JSON: {exc}"
            return JSONResponse({"error": "Bad Request", "message": message}, status_code=status)

    return [Route(f"{CONTROL_PREFIX}/technician/complete", complete_job, methods=["POST"])]
