"""Schemathesis hooks for `.ci/api_fuzz.py`: fresh idempotency keys.

A real client draws a new Idempotency-Key (and, for an admin deposit or
withdrawal, user's or fees', a new outside reference) for every new operation, and reuses one
only to retry the same request. Schemathesis' generator instead repeats short
values ("0", "!") across different requests, which souk rightly refuses with
422 `idempotency_mismatch`: correct behaviour, but not what the positive-data
check asks about. So, just before a request is sent, a valid key or
reference gets a unique suffix. Invalid ones (empty, too long, bytes outside
visible ASCII) are sent exactly as generated, so negative tests still see
them. Replays and mismatches are tested by the integration tests.
"""

import itertools
import re

import schemathesis

_COUNTER = itertools.count()
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")
# Room for the suffix under each field's own limit (255 and 128).
_KEY_ROOM = 240
_REFERENCE_ROOM = 110


def _unique(value, room):
    if isinstance(value, str) and _VISIBLE_ASCII.fullmatch(value) and len(value) <= room:
        return f"{value}~{next(_COUNTER)}"
    return value


@schemathesis.hook
def before_call(context, case, kwargs):
    # Only schema-valid cases: a negative case is meant to be refused
    # before any key matters, and editing a coverage scenario (say, one
    # without the Authorization header) would change what it tests. Edits
    # of the case itself are what is sent.
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key":
            headers[name] = _unique(headers[name], _KEY_ROOM)
    body = case.body
    if isinstance(body, dict) and "reference" in body and case.path in (
        "/api/v1/admin/deposits",
        "/api/v1/admin/withdrawals",
        "/api/v1/admin/fees/withdrawals",
    ):
        body["reference"] = _unique(body["reference"], _REFERENCE_ROOM)
