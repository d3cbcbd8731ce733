"""1:N search over enrolled templates, brute force in numpy over float32.

Brute force is exact and fast enough: one matrix-vector product reads 51 MB for 100,000
templates (~10 ms on 2 cores); an approximate index would add a dependency and a recall
figure to defend, for a gallery that a single host holds in memory anyway.

A customer has several templates (one per enrolment photo); a customer's distance is the
smallest of theirs. The match is the nearest customer, and the runner-up is the nearest
*other* customer, for the margin rule in `acquirer.face.service`.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

DIM = 128


@dataclass(frozen=True)
class Nearest:
    customer_id: str
    distance: float
    runner_up_id: str | None
    runner_up_distance: float  # math.inf when only one customer is enrolled


class Gallery:
    """Templates in one growing float32 matrix; rows of a customer may be anywhere."""

    def __init__(self, capacity: int = 1024):
        self._lock = threading.Lock()
        self._rows = np.zeros((capacity, DIM), np.float32)
        self._norms = np.zeros(capacity, np.float32)  # squared norms, so a search is one product
        self._owner = np.zeros(capacity, np.int32)
        self._n = 0
        self._ids: list[str] = []
        self._index: dict[str, int] = {}

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"<Gallery templates={self._n} customers={len(self._index)}>"

    @property
    def customers(self) -> int:
        return len(self._index)

    def add(self, customer_id: str, templates: np.ndarray) -> None:
        block = np.asarray(templates, np.float32).reshape(-1, DIM)
        with self._lock:
            owner = self._index.get(customer_id)
            if owner is None:
                owner = self._index[customer_id] = len(self._ids)
                self._ids.append(customer_id)
            end = self._n + len(block)
            if end > len(self._rows):
                self._grow(max(end, 2 * len(self._rows)))
            # write the rows before publishing the count: a concurrent search never sees half a row
            self._rows[self._n:end] = block
            self._norms[self._n:end] = np.einsum("ij,ij->i", block, block)
            self._owner[self._n:end] = owner
            self._n = end

    def _grow(self, capacity: int) -> None:
        # new arrays, not resize in place: a search running on the old ones keeps valid data
        rows = np.zeros((capacity, DIM), np.float32)
        norms = np.zeros(capacity, np.float32)
        owner = np.zeros(capacity, np.int32)
        rows[:self._n], norms[:self._n], owner[:self._n] = self._rows[:self._n], self._norms[:self._n], \
            self._owner[:self._n]
        self._rows, self._norms, self._owner = rows, norms, owner

    def remove(self, customer_id: str) -> None:
        with self._lock:
            owner = self._index.get(customer_id)
            if owner is None:
                return
            keep = self._owner[:self._n] != owner
            n = int(keep.sum())
            rows = np.zeros((max(len(self._rows), 1), DIM), np.float32)
            norms = np.zeros(len(rows), np.float32)
            owners = np.zeros(len(rows), np.int32)
            rows[:n], norms[:n], owners[:n] = self._rows[:self._n][keep], self._norms[:self._n][keep], \
                self._owner[:self._n][keep]
            # the id slot stays (an empty owner): renumbering would race with searches
            del self._index[customer_id]
            self._rows, self._norms, self._owner, self._n = rows, norms, owners, n

    def search(self, probe: np.ndarray) -> Nearest | None:
        """The nearest customer and the nearest other one; None for an empty gallery."""
        with self._lock:  # a consistent snapshot; the arithmetic runs outside the lock
            n, rows, norms, owner, ids = self._n, self._rows, self._norms, self._owner, self._ids
        if n == 0:
            return None
        p = np.asarray(probe, np.float32).reshape(DIM)
        # |g - p|^2 = |g|^2 - 2 g.p + |p|^2; the float32 rounding can dip below zero
        d2 = norms[:n] - 2.0 * (rows[:n] @ p) + np.float32(p @ p)
        best = int(np.argmin(d2))
        best_owner = owner[best]
        others = np.where(owner[:n] == best_owner, np.float32(np.inf), d2)
        second = int(np.argmin(others))
        second_d2 = float(others[second])
        return Nearest(ids[best_owner], math.sqrt(max(float(d2[best]), 0.0)),
                       None if math.isinf(second_d2) else ids[owner[second]],
                       math.sqrt(max(second_d2, 0.0)))
