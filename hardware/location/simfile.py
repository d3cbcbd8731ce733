"""A simulated receiver whose position is a small JSON file: the demo's and the tests'
way to carry a terminal (its TEE process included) out of its fence and back.
Simulation only: a real terminal uses a GNSS receiver (NMEA, gpsd) or a surveyed site.

    {"latitude": 31.2304, "longitude": 121.4737, "accuracy_m": 10, "cell_ids": []}
    {"off": true}            # the receiver has no fix (indoors, antenna cut)
    {..., "time": 1763864130.5}   # the fix's time (epoch seconds), to simulate hours in seconds

Every read returns the file's current position, dated now (or "time"); no file means no fix.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

from hardware.clock import Clock
from hardware.location.fix import Fix, LocationSource, NoFix


def write_position(path: str | os.PathLike, latitude: float | None, longitude: float | None = None,
                   accuracy_m: float = 10.0, cell_ids: tuple[str, ...] = (), at: float | None = None) -> None:
    """Move the simulated receiver (None: no fix). Written atomically: a reader never
    sees half a file."""
    path = Path(path)
    doc = {"off": True} if latitude is None else {"latitude": latitude, "longitude": longitude,
                                                  "accuracy_m": accuracy_m, "cell_ids": list(cell_ids)}
    if at is not None and latitude is not None:
        doc["time"] = at
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


class SimulatedReceiver(LocationSource):
    def __init__(self, path: str | os.PathLike, *, name: str | None = None, clock: Clock | None = None) -> None:
        super().__init__(name or f"simulated receiver {path}", clock)
        self.path = Path(path)
        self.status = "no position file yet"

    def _poll(self, wait: float) -> Fix | None:
        try:
            doc = json.loads(self.path.read_text())
            if doc.get("off"):
                self.status = "receiver has no fix"
            else:
                self.status = "ok"
                when = dt.datetime.fromtimestamp(float(doc["time"]), dt.timezone.utc) if "time" in doc \
                    else self._clock.now()
                return Fix(float(doc["latitude"]), float(doc["longitude"]), float(doc.get("accuracy_m", 10.0)),
                           self.name, when, cell_ids=tuple(doc.get("cell_ids", ())))
        except FileNotFoundError:
            self.status = "no position file yet"
        except (ValueError, KeyError, TypeError) as exc:
            self.status = f"position file unreadable: {exc}"
        time.sleep(wait)
        return None

    def _no_fix(self, timeout: float) -> NoFix:
        return NoFix(f"no fix from {self.name!r} within {timeout:g} s: {self.status}")
