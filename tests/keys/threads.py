"""Running one piece of work in several threads at once, for the tests of shared key objects."""
from __future__ import annotations

import threading
from typing import Callable


def run_in_threads(work: Callable[[int], None], count: int = 4) -> None:
    """`work(n)` for n in range(count), each in its own thread, all at once; the first error
    any of them raised is raised here (an assertion inside a thread would not fail a test)."""
    errors: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:  # collected and raised below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
