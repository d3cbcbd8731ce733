"""How a decision's facts and hits are kept in the store: compact on the way in, the same
dictionaries as ever on the way out.

Writing is on every decision, reading only for `acquirer risk explain` and tests, so
the work sits on the read side. `capture(f)` takes the facts' values in one C call
(`operator.attrgetter`), and the store encodes them at its batch flush as one JSON
array in `FIELDS` order (no dictionary built, no key written per row), the flags
appended only when there are some. Hits are arrays too: rule, status, action, code,
text, values. `facts_dict` and `hits_dicts` turn both back into what `StoredDecision`
has always held (`cli.format_decision` reads them), and read rows written as
dictionaries by earlier versions unchanged.
"""
from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring_ascii
from operator import attrgetter
from typing import Any, Iterable

from .rules import Action

# what `Facts` holds besides the columns of its own (txn id, terminal, merchant, token, amount, time)
FIELDS = ("channel", "kind", "merchant_grade", "device_id", "masked_pan", "card_family", "merchant_mcc",
          "merchant_mobile", "pin_present", "passcode_present", "cdcvm", "entry_mode", "location_status",
          "location_required", "location_refusal", "location_reason", "location_offset_m", "location_distance_m",
          "location_fix_age_s", "location_cells")
capture = attrgetter(*FIELDS)
_HIT_KEYS = ("rule", "status", "action", "code", "text", "values")
_VALUE = {a: a.value for a in Action}  # `.value` of an enum member is a Python-level property


def _encoder():
    """The json module's C encoder, made once: `JSONEncoder.encode` builds a new one on every
    call, which costs as much as encoding a row (the plain encoder where there is no C one)."""
    plain = json.JSONEncoder(separators=(",", ":"))
    if c_make_encoder is None:
        return plain.encode
    make = c_make_encoder(None, plain.default, encode_basestring_ascii, None, ":", ",", False, False, True)
    return lambda value: "".join(make(value, 0))


_encode = _encoder()

# the dictionary `explain` reads: (its key, the field); empty and false values are left out
_SHOWN = (("device", "device_id"), ("masked_pan", "masked_pan"), ("card_family", "card_family"),
          ("mcc", "merchant_mcc"), ("mobile", "merchant_mobile"), ("pin", "pin_present"),
          ("passcode", "passcode_present"), ("cdcvm", "cdcvm"), ("entry_mode", "entry_mode"))
_LOCATION_ROUNDED = (("offset_m", "location_offset_m"), ("distance_m", "location_distance_m"),
                     ("fix_age_s", "location_fix_age_s"))
_LOCATION_SHOWN = (("required", "location_required"), ("refusal", "location_refusal"),
                   ("reason", "location_reason"))


def encode_facts(values: tuple, flags: frozenset) -> str:
    """`values`: `capture(facts)`; `flags`: the facts' flags."""
    return _encode(values) if not flags else _encode((*values, sorted(flags)))


def encode_hits(hits: Iterable) -> str:
    """`hits`: the decision's `Hit`s (read at flush: they are not changed after a decision)."""
    return _encode([(h.rule, h.status, _VALUE[h.action], h.code, h.text, h.values) for h in hits]) if hits else "[]"


def facts_dict(text: str) -> dict[str, Any]:
    """What `risk explain` shows of the facts (masked PAN only; the token is not secret)."""
    stored = json.loads(text)
    if isinstance(stored, dict):
        return stored  # written as a dictionary by an earlier version
    f = dict(zip(FIELDS, stored))
    out: dict[str, Any] = {"channel": f["channel"], "kind": f["kind"], "grade": f["merchant_grade"]}
    out.update((key, f[field]) for key, field in _SHOWN if f[field])
    if len(stored) > len(FIELDS):
        out["flags"] = stored[-1]
    if f["location_status"] != "none":
        loc = {"status": f["location_status"]}
        loc.update((key, round(f[field], 1)) for key, field in _LOCATION_ROUNDED)
        loc.update((key, f[field]) for key, field in _LOCATION_SHOWN if f[field])
        if f["location_cells"] != "unknown":
            loc["cells"] = f["location_cells"]
        out["location"] = loc
    return out


def hits_dicts(text: str) -> list[dict[str, Any]]:
    return [h if isinstance(h, dict) else dict(zip(_HIT_KEYS, h)) for h in json.loads(text)]
