"""`Redactor.redacted` searches a value's JSON text once; it must give what scrubbing each string gives."""

from __future__ import annotations

import base64
from urllib.parse import quote, quote_plus

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from fieldrelay.redaction import Redactor

SECRETS = ["p@ss:w0rd!-Chat-Token-4f9a", 'q"uo\\te-secret\t99', "émoji-ключ-secret-7"]
REDACTOR = Redactor(SECRETS, basic_users={SECRETS[0]: ["bot"]})


def spellings(secret: str) -> list[str]:
    return [
        secret,
        secret.upper(),
        secret[::-1],
        secret[3:14],
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(f"bot:{secret}".encode()).decode(),
    ]


PIECES = [s for secret in SECRETS for s in spellings(secret)]
text = st.one_of(
    st.text(max_size=40),
    st.builds(lambda a, p, b: a + p + b, st.text(max_size=8), st.sampled_from(PIECES), st.text(max_size=8)),
)
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(text, st.sampled_from(["password", "Authorization", "token", "rule", "TO\u212aEN", "Api_Key"])),
            inner,
        ),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_one_search_of_the_json_text_gives_what_scrubbing_each_string_gives(value):
    clean, line = REDACTOR.redacted(value)
    assert line == orjson.dumps(REDACTOR.scrub(value))
    assert orjson.loads(line) == orjson.loads(orjson.dumps(clean))


def test_a_secret_inside_an_object_that_json_holds_as_its_str_is_masked():
    class Holder:
        def __str__(self) -> str:
            return f"holder of {SECRETS[0]}"

    _, line = REDACTOR.redacted({"detail": Holder()})
    assert SECRETS[0].encode() not in line and b"[redacted]" in line


def test_a_secret_with_json_escapes_is_found_in_the_json_text():
    _, line = REDACTOR.redacted({"note": f"sent {SECRETS[1]} here"})
    assert line == b'{"note":"sent [redacted] here"}'


def test_a_key_that_lower_cases_into_a_secret_one_is_masked():
    # The Kelvin sign lower-cases to "k": "TO\u212aEN".lower() == "token", as scrub compares keys.
    clean, line = REDACTOR.redacted({"TO\u212aEN": "abc", "note": "ok"})
    assert clean["TO\u212aEN"] == "[redacted]" and b"abc" not in line
