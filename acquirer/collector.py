"""The collector's setting in the host's process (the event loop's).

CPython walks its youngest generation every 700 container objects allocated and not yet
freed. Under load a sale leaves about 20 such objects alive past its own end (caches,
counters, the sales still in flight), so at 64 terminals the event loop walked every sale
in flight once per ~35 sales: 3-4 us of its CPU per sale, measured with `gc.callbacks`
(0.4-0.5 us at 10,000). Every object is still collected; cyclic garbage only waits longer.
The children need no such setting: measured the same way, their collections happen while
they start, hardly any while they serve (the ledger process freezes what it opened).
"""
from __future__ import annotations

import gc

YOUNG_GENERATION = 10_000


def collect_less_often() -> None:
    """Raise the youngest generation's threshold to `YOUNG_GENERATION` for this process (the
    older generations keep CPython's). A threshold of 0 (collection off) or one set higher
    stays as it is."""
    young, *older = gc.get_threshold()
    if 0 < young < YOUNG_GENERATION:
        gc.set_threshold(YOUNG_GENERATION, *older)
