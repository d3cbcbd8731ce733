"""One bounded table for the caches that keep what is dear to make: the HSM's card keys, the
issuer's PAN tokens, the codec's compiled coders, the TLV layouts. A plain dict in insertion
order; when it is full, a new key first drops the oldest entry."""
from __future__ import annotations


def remember(table: dict, key, value, limit: int):
    """`table[key] = value`, the oldest entry dropped first if `key` is new and `table`
    holds `limit` entries; returns `value`. The drop tolerates an entry already gone."""
    if key not in table and len(table) >= limit:
        table.pop(next(iter(table)), None)
    table[key] = value
    return value
