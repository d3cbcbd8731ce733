"""How a decision's facts and hits are kept in the store: compact on the way in, the same
dictionaries as ever on the way out.

Writing is on every decision, reading only for `acquirer risk explain` and tests, so
the work sits on the read side. `capture(f)` takes the facts' values in one C call
(`operator.attrgetter`), and the store encodes them when a batch fills, as one array
in `FIELDS` order (no dictionary built, no key written per row), the flags appended
only when there are some. Hits are arrays too: rule, status, action, code, text, values.

The arrays are `marshal`ed (a BLOB; format version 4): the same values as the JSON text
rows of earlier versions, in a third of the CPU (JSON spells every float out with its
shortest repr, and the facts carry three floats). Only exact built-in types marshal; a
row holding anything else (a str or int subclass someone passed in a fact) is written as
the JSON text of before instead, so no batch is ever refused for it. `facts_dict` and
`hits_dicts` read all three forms (a BLOB; a JSON array; a JSON dictionary, as the
first versions wrote) into what `StoredDecision` has always held (`cli.format_decision`
reads them): lists where JSON gave lists, so a reader cannot tell which form a row had.
"""
from __future__ import annotations

import json
import marshal
from json.encoder import c_make_encoder, encode_basestring_ascii
from operator import attrgetter
from typing import Any, Iterable


# what `Facts` holds besides the columns of its own (txn id, terminal, merchant, token, amount, time)
FIELDS = ("channel", "kind", "merchant_grade", "device_id", "masked_pan", "card_family", "merchant_mcc",
          "merchant_mobile", "pin_present", "passcode_present", "cdcvm", "entry_mode", "location_status",
          "location_required", "location_refusal", "location_reason", "location_offset_m", "location_distance_m",
          "location_fix_age_s", "location_cells")
capture = attrgetter(*FIELDS)
_HIT_KEYS = ("rule", "status", "action", "code", "text", "values")


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


_MARSHAL = 4  # marshal's format version: every Python since 3.4 reads it


def encode_facts(values: tuple, flags: frozenset) -> bytes | str:
    """`values`: `capture(facts)`; `flags`: the facts' flags."""
    row = values if not flags else (*values, sorted(flags))
    try:
        return marshal.dumps(row, _MARSHAL)
    except ValueError:  # not an exact built-in type somewhere: the JSON text of before
        return _encode(row)


def encode_hits(hits: Iterable) -> bytes | str:
    """`hits`: the decision's `Hit`s (read when the batch fills: they are not changed after a decision)."""
    if not hits:
        return _NO_HITS
    rows = [(h.rule, h.status, h.action._value_, h.code, h.text, h.values) for h in hits]  # `_value_`: see rules.Action
    try:
        return marshal.dumps(rows, _MARSHAL)
    except ValueError:
        return _encode(rows)


_NO_HITS = marshal.dumps([], _MARSHAL)


def _decode(stored: bytes | str) -> Any:
    """A column as the JSON decoder gave it: marshal's tuples become lists."""
    if isinstance(stored, str):
        return json.loads(stored)
    return _lists(marshal.loads(stored))


def _lists(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value


def facts_dict(text: bytes | str) -> dict[str, Any]:
    """What `risk explain` shows of the facts (masked PAN only; the token is not secret)."""
    stored = _decode(text)
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


def hits_dicts(text: bytes | str) -> list[dict[str, Any]]:
    return [h if isinstance(h, dict) else dict(zip(_HIT_KEYS, h)) for h in _decode(text)]
