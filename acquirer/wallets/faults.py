"""What a simulated wallet gateway does wrong, on purpose, for tests and demos.

Faults are scripted per operation ("pay", "precreate", "query", "close", "reverse",
"refund", "bill", or "*" for any), so a test says exactly which call fails and how;
nothing is random. Kinds:

- ``timeout``: the request is dropped unprocessed and the connection held open;
- ``timeout_after``: the request is processed (money moves), then the answer is held;
- ``system_error``: a signed business answer "system error", nothing processed;
- ``http_500``: an unsigned 5xx page from a broken gateway, nothing processed;
- ``bad_signature``: processed, answered with a signature that does not verify (one
  bit of the genuine one flipped: right shape, wrong value).
"""
from __future__ import annotations

import asyncio
import base64
from collections import deque
from dataclasses import dataclass, field

KINDS = ("timeout", "timeout_after", "system_error", "http_500", "bad_signature")
OPERATIONS = ("pay", "precreate", "query", "close", "reverse", "refund", "bill", "*")


@dataclass
class FaultPlan:
    latency: float = 0.0  # seconds added to every merchant-side answer
    hang_seconds: float = 30.0  # how long a "timeout" holds the connection at most
    _script: dict[str, deque[str]] = field(default_factory=dict)
    _always: dict[str, str] = field(default_factory=dict)
    _released: asyncio.Event | None = None
    taken: list[tuple[str, str]] = field(default_factory=list)  # (operation, kind) as they fired

    def inject(self, operation: str, kind: str, times: int = 1) -> "FaultPlan":
        self._check(operation, kind)
        self._script.setdefault(operation, deque()).extend([kind] * times)
        return self

    def always(self, operation: str, kind: str) -> "FaultPlan":
        self._check(operation, kind)
        self._always[operation] = kind
        return self

    def heal(self) -> None:
        """Stop failing: the provider is back."""
        self._script.clear()
        self._always.clear()

    def take(self, operation: str) -> str | None:
        for key in (operation, "*"):
            queue = self._script.get(key)
            if queue:
                kind = queue.popleft()
                self.taken.append((operation, kind))
                return kind
        kind = self._always.get(operation) or self._always.get("*")
        if kind:
            self.taken.append((operation, kind))
        return kind

    async def delay(self) -> None:
        if self.latency > 0:
            await asyncio.sleep(self.latency)

    async def hang(self) -> None:
        """Hold the request until the hang time passes or the gateway stops."""
        if self._released is None:
            self._released = asyncio.Event()
        try:
            await asyncio.wait_for(self._released.wait(), self.hang_seconds)
        except asyncio.TimeoutError:
            pass

    def release(self) -> None:
        if self._released is None:
            self._released = asyncio.Event()
        self._released.set()

    @staticmethod
    def _check(operation: str, kind: str) -> None:
        if operation not in OPERATIONS:
            raise ValueError(f"operation must be one of {', '.join(OPERATIONS)}, not {operation!r}")
        if kind not in KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(KINDS)}, not {kind!r}")


def spoil(signature: str) -> str:
    """A genuine signature with one bit flipped: the shape is right, it does not verify."""
    raw = bytearray(base64.b64decode(signature))
    raw[-1] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()
