"""A card's counters, kept across taps and process restarts in one small JSON file.

Written atomically (temp file, fsync, rename) before the card answers the command that
changed them, so a card pulled or killed mid-transaction never reuses an ATC.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

MAX_ATC = 0xFFFF
LOG_ENTRIES = 10


@dataclass
class CardState:
    atc: int = 0
    last_online_atc: int = 0  # tag 9F13: ATC of the last transaction the issuer authenticated
    consecutive_offline: int = 0
    cumulative_offline: int = 0  # minor units approved offline since the last online approval
    ec_balance: int | None = None  # PBOC electronic cash balance (tag 9F79)
    log: list[dict] = field(default_factory=list)  # newest first, for the log format 9F4F


class CardStateStore:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def load(self) -> CardState | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ValueError(f"card state {self.path} is unreadable: {exc}") from None
        known = {k: v for k, v in data.items() if k in CardState.__dataclass_fields__}
        return CardState(**known)

    def save(self, state: CardState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(state), f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
