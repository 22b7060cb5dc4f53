"""Removes configured secret values from anything on its way to logs, traces, dead letters, the console or Sentry.

A secret leaks in more spellings than its own (docs/security.md): URL-encoded in a query string (quote,
quote_plus), base64 in a `Basic` header, upper-cased, reversed or cut short by a template
(`{{ env.TOKEN | upper }}`, `[:12]`). The redactor masks each secret's

- raw, `quote`, `quote_plus`, reversed and base64 forms (base64 at each of its three alignments, so
  the secret is found inside `base64(user + ":" + secret)` too), in any ASCII letter case, and
- any run of `FRAGMENT` or more characters of those forms (a prefix, a suffix, a slice), as long as
  the run is not so plain that it would mask ordinary text (fewer than `DISTINCT` different characters).

Like Sentry's scrubber it also masks the value of every secret-looking key (`password`, `authorization`...).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import orjson
from pydantic import SecretStr

from fieldrelay.settings import Settings

MASK = "[redacted]"
MIN_SECRET = 4  # shorter values would mask ordinary text; a secret that short is not worth pretending to hide
FRAGMENT = 8
DISTINCT = 4
# Keys whose values are secret whatever they hold, in headers, query strings and bodies.
SECRET_KEYS = frozenset(
    {
        "authorization",
        "cookie",
        "set-cookie",
        "password",
        "sha512password",
        "api_key",
        "apikey",
        "authtoken",
        "phpsessid",
        "token",
        "x-api-key",
        "dsn",
    }
)
_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _lower(text: str) -> str:
    # ASCII letters only, so every index stays where it was (str.lower does that too, for ASCII text)
    return text.lower() if text.isascii() else text.translate(_LOWER)


def _base64_cores(secret: str) -> set[str]:
    """The part of base64(prefix + secret) that depends on the secret alone, for each prefix length mod 3."""
    raw = secret.encode()
    out = set()
    for pad in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * pad + raw).decode()
            first, end = -(-8 * pad // 6), (8 * (pad + len(raw))) // 6
            core = text[first:end]
            if len(core) >= FRAGMENT:
                out.add(core)
        out.add(base64.b64encode(raw).decode().rstrip("="))
    return {c for c in out if len(c) >= MIN_SECRET}


def secret_forms(secret: str, users: Iterable[str] = ()) -> set[str]:
    """Every spelling of `secret` the redactor looks for whole (lower-cased)."""
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret), secret[::-1], *_base64_cores(secret)}
    forms |= {base64.b64encode(f"{user}:{secret}".encode()).decode() for user in users}
    return {_lower(f) for f in forms if len(f) >= MIN_SECRET}


class Redactor:
    """Replaces every known secret in any of its forms, and the value of every secret-looking key.

    >>> Redactor(["s3cret"]).scrub({"url": "https://x/?password=s3cret", "password": "other"})
    {'url': 'https://x/?password=[redacted]', 'password': '[redacted]'}
    >>> Redactor(["p@ss:w0rd!-0123456789"]).text("GET /x?password=p%40ss%3Aw0rd%21-0123456789 and P@SS:W0RD!")
    'GET /x?password=[redacted] and [redacted]'

    `whole` values are masked only whole (no fragments), `basic_users` pairs a secret with the user
    names it is sent with as HTTP Basic credentials.
    """

    def __init__(
        self,
        secrets: Iterable[str],
        *,
        whole: Iterable[str] = (),
        basic_users: dict[str, list[str]] | None = None,
        mask: str = MASK,
    ):
        self.mask = mask
        values = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)
        self.secrets = values
        forms: set[str] = set()
        grams: dict[str, list[tuple[str, int]]] = {}
        for value in whole:  # a URL holding a secret (a Sentry DSN): its host must stay readable
            if len(value) >= MIN_SECRET:
                forms |= {_lower(value), _lower(quote(value, safe="")), _lower(quote_plus(value))}
        for secret in values:
            mine = secret_forms(secret, (basic_users or {}).get(secret, ()))
            mine |= {_json_escaped(form) for form in mine}  # as it shows inside a JSON string (`dumps`)
            forms |= mine
            for form in mine:
                for i in range(len(form) - FRAGMENT + 1):
                    gram = form[i : i + FRAGMENT]
                    if len(set(gram)) >= DISTINCT:
                        grams.setdefault(gram, []).append((form, i))
        self._forms = sorted(forms, key=len, reverse=True)
        self._grams = grams
        # Two redactors with the same `sameness` mask the same text (fieldrelay.logs.PRE_REDACTED).
        self.sameness = hash((mask, tuple(sorted(forms)), tuple(sorted(grams))))
        self._quads = {g[i : i + FRAGMENT // 2] for g in grams for i in range(FRAGMENT // 2 + 1)}

    def text(self, value: str) -> str:
        if len(value) < MIN_SECRET or not self._forms:
            return value
        low = _lower(value)
        spans: list[tuple[int, int]] = []
        for form in self._forms:
            start = low.find(form)
            while start != -1:
                spans.append((start, start + len(form)))
                start = low.find(form, start + len(form))
        if self._grams and len(low) >= FRAGMENT:
            spans.extend(self._fragments(low))
        if not spans:
            return value
        spans.sort()
        merged: list[list[int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        out, at = [], 0
        for start, end in merged:
            out += [value[at:start], self.mask]
            at = end
        out.append(value[at:])
        return "".join(out)

    def _fragments(self, low: str) -> list[tuple[int, int]]:
        """Runs of `FRAGMENT` or more characters of a secret's forms, each extended as far as it goes.

        A run of 8 always holds a 4-character piece starting at a multiple of 5, so only those are
        looked up first (a fifth of the positions); the 8-character windows around a hit are then tried.
        """
        spans: list[tuple[int, int]] = []
        n, grams, quads, half = len(low), self._grams, self._quads, FRAGMENT // 2
        done = 0  # text before this is already masked or ruled out
        for j in range(0, n - half + 1, half + 1):
            if low[j : j + half] not in quads:
                continue
            for i in range(max(done, j - half), min(j, n - FRAGMENT) + 1):
                hits = grams.get(low[i : i + FRAGMENT])
                if hits is None:
                    continue
                start, end = i, i + FRAGMENT
                for form, offset in hits:
                    e, k = i + FRAGMENT, offset + FRAGMENT
                    while e < n and k < len(form) and low[e] == form[k]:
                        e, k = e + 1, k + 1
                    b, k = i, offset
                    while b > 0 and k > 0 and low[b - 1] == form[k - 1]:
                        b, k = b - 1, k - 1
                    start, end = min(start, b), max(end, e)
                spans.append((start, end))
                done = end
                break
        return spans

    def redacted(self, value: Any) -> tuple[Any, bytes]:
        """`value` scrubbed, and its JSON (objects JSON cannot hold as their `str`): what `scrub` gives, and
        the same text as `orjson.dumps(self.scrub(value))`.

        The JSON text is searched once, where `scrub` searches each string apart (a trace entry or a log
        line holds a dozen): when no secret shows anywhere in it, none is in any of its strings, since a
        string's JSON spelling holds its secrets raw or JSON-escaped, and both are looked for. Only a
        text in which something shows is scrubbed string by string.
        """
        masked, line = value, orjson.dumps(value, default=str)
        low = line.lower()
        # A secret-looking key shows in the text as `"password":`; an ASCII text without one has none (a
        # non-ASCII key may lower-case into one: walked).
        if not low.isascii() or any(key in low for key in _KEY_SPELLINGS):
            masked = self._keys_masked(value)
            line = orjson.dumps(masked, default=str)
        if not self._forms:
            return masked, line
        text = line.decode()
        if self.text(text) is text:
            return masked, line
        clean = self.scrub(orjson.loads(line))
        return clean, orjson.dumps(clean)

    def dumps(self, value: Any) -> bytes:
        return self.redacted(value)[1]

    def _keys_masked(self, value: Any) -> Any:
        return self._walk(value, lambda text: text)

    def scrub(self, value: Any) -> Any:
        return self._walk(value, self.text)

    def _walk(self, value: Any, text: Callable[[str], str]) -> Any:
        """`value` with the value of every secret-looking key masked and `text` applied to every other string."""
        if isinstance(value, str):
            return text(value)
        if isinstance(value, dict):
            return {
                k: self.mask if isinstance(k, str) and k.lower() in SECRET_KEYS and v else self._walk(v, text)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return type(value)(self._walk(v, text) for v in value)
        return value


def _json_escaped(form: str) -> str:
    return orjson.dumps(form).decode()[1:-1]


_KEY_SPELLINGS = tuple(orjson.dumps(key) + b":" for key in sorted(SECRET_KEYS))


def settings_secrets(settings: Settings) -> list[str]:
    # Values rules may read through env/!secret are treated as secrets wherever they surface.
    rule_values = [os.environ[name] for name in settings.rules_env if os.environ.get(name)]
    values: list[SecretStr | None] = [
        settings.servicetrade_password,
        settings.servicetrade_client_secret,  # OAuth2 (issue 15)
        settings.synchroteam_api_key,
        settings.synergist_password,
        settings.synergist_sha512password,
        settings.console_token,
        *settings.webhook_tokens,
    ]
    secrets = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()] + rule_values
    dsn = settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else ""
    if dsn:
        key = urlsplit(dsn).username or ""
        secrets += [key] if key else []
    return secrets


def redactor_for(settings: Settings) -> Redactor:
    """The redactor of every process: the settings' secrets, the Sentry DSN whole (its key in any form), and
    Synchroteam's `domain:key` Basic form."""
    users: dict[str, list[str]] = {}
    key = settings.synchroteam_api_key.get_secret_value()
    if key and settings.synchroteam_domain:
        users[key] = [settings.synchroteam_domain]
    dsn = settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else ""
    return Redactor(settings_secrets(settings), whole=[dsn] if dsn else [], basic_users=users)
