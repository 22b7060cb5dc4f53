"""The shared error tree: catchable by kind or by API, and picklable."""

from __future__ import annotations

import pickle

import pytest

from workers.connectors import outbound, servicetrade, synchroteam, synergist
from workers.connectors.errors import (
    AuthFailed,
    ConnectorError,
    NotFound,
    RateLimited,
    Rejected,
    Unavailable,
)

FAMILIES = [servicetrade.FAMILY, synchroteam.FAMILY, synergist.FAMILY, outbound.FAMILY]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.api)
@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, Rejected),
        (401, AuthFailed),
        (404, NotFound),
        (409, Rejected),
        (429, RateLimited),
        (500, Unavailable),
    ],
)
def test_every_family_maps_statuses_onto_the_shared_kinds(family: object, status: int, kind: type) -> None:
    err = family.for_status(status, "/x", "why")  # type: ignore[attr-defined]
    assert isinstance(err, kind) and isinstance(err, ConnectorError)
    assert err.api == family.api  # type: ignore[attr-defined]
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is type(err) and clone.args == err.args and str(clone) == str(err)


def test_str_and_repr() -> None:
    err = RateLimited("synchroteam", 429, "/api/v3/job/list", "slow down", 1530199810.0)
    assert str(err) == "synchroteam /api/v3/job/list: HTTP 429: slow down"
    assert repr(err) == "RateLimited('synchroteam', 429, '/api/v3/job/list', 'slow down')"
    assert str(Unavailable("http", None, "/", "timeout")) == "http /: no response: timeout"
    assert pickle.loads(pickle.dumps(err)).reset_at == 1530199810.0


def test_api_classes_are_caught_both_ways() -> None:
    with pytest.raises(Rejected):
        raise synergist.SynergistConflict("synergist", 200, "/jsonapi/activities.json", "stale")
    with pytest.raises(synchroteam.SynchroteamError):
        raise synchroteam.SynchroteamQuotaExceeded("synchroteam", 429, "/", "quota", 0.0)
    assert issubclass(synchroteam.SynchroteamQuotaExceeded, Unavailable)
