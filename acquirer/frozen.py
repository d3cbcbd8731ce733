"""Frozen dataclasses made without their `__init__`, for the objects built once per sale.

A frozen dataclass's `__init__` sets each field through `object.__setattr__` (and calls
`__post_init__`): several times the cost of filling the instance's dictionary. The
channels (a request and result off the issuer's pipe, the cryptogram, an account) and the
ledger (a journal entry, a receipt) build theirs this way.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, TypeVar

T = TypeVar("T")


def made(cls: type[T], values: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> T:
    """An instance of the frozen dataclass `cls` holding `values` (every field). Only for
    what the caller has checked: `__init__` and `__post_init__` do not run."""
    obj = object.__new__(cls)
    obj.__dict__.update(values)
    return obj
