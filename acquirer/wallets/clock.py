"""Time for wallets and channels: injectable, and in China Standard Time for dates.

Business days, bill dates and timestamps on the wire are Beijing time (UTC+8) in every
wallet style, whatever the host's own time zone is. Tests drive a `ManualClock`, so code
expiry, polling back-off and score recovery are exercised without waiting.
"""
from __future__ import annotations

import asyncio
import datetime as dt

CST = dt.timezone(dt.timedelta(hours=8), "CST")


def cst(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, CST)


def bill_date(ts: float) -> str:
    """YYYY-MM-DD of the business day `ts` falls in."""
    return cst(ts).strftime("%Y-%m-%d")


def cst_epoch(text: str) -> float:
    """Epoch seconds of 'YYYY-MM-DD HH:MM:SS' Beijing time."""
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CST).timestamp()


class ManualClock:
    """A clock that moves only when told; `sleep` moves it and lets other tasks run."""

    def __init__(self, start: float):
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)


def yuan(fen: int) -> str:
    """Fen as the decimal yuan string Alipay-style and bill files use ("12.34")."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def fen(text: str) -> int:
    """A yuan string back to fen, exactly (no float on money)."""
    text = text.strip()
    neg = text.startswith("-")
    whole, _, frac = text.lstrip("+-").partition(".")
    if not whole.isdigit() or len(frac) > 2 or (frac and not frac.isdigit()):
        raise ValueError(f"amount {text!r} is not a yuan amount with at most 2 decimals")
    value = int(whole) * 100 + int((frac + "00")[:2])
    return -value if neg else value
