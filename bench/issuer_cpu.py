"""CPU per card sale of the issuer simulator's process, against an echo of the same pipe.

    .venv/bin/python bench/issuer_cpu.py [--sales 3000] [--rounds 3] [--cards 300] [--taps N]

The host hands every card sale to the issuer simulator's own process
(acquirer/channels/remote.py): a pickled `CardAuthorisation` down a pipe, the decision
(account, ARQC, ARPC, limits, balance) committed to the issuer's SQLite file with its
group, the pickled `CardResult` back. This runs that child exactly as the host starts it
(`python -m acquirer.channels.remote`, WAL, the host's synchronous setting) on sales
built as bench/host.py builds them (PBOC_SM4 cards personalised from the issuer's HSM,
field 55 with a real ARQC, each card tapped several times with a rising ATC), and reads
the child's CPU time (its threads' `sum_exec_runtime` in /proc/PID/task/*/schedstat:
CPU, not wall, so the other tenants of this shared machine count only through caches).

By default the same 300 cards go round, every card known to the issuer after the
warm-up. In the host each card is tapped only a few times (bench/host.py, TAPS_PER_CARD):
a quarter of its sales are a card's first at the issuer, which reads its account from the
file, computes its PAN token and derives its ICC master key. `--taps N` builds the sales
that way: each terminal's card is tapped N times, then the terminal takes a fresh card.

Sales go down in groups and the bench waits for each group's answers before the next:
groups of 1 are what the issuer mostly sees at the host's target load (each sale its
own BEGIN/COMMIT), groups of 4 a busy moment (the child answers every 4 at most).

The baseline, measured in the same run, is an echo child: the same pipe, the same
pickles read and a canned answer pickled back for each, no authorisation: what the
pipe costs on this machine now. The issuer's and the echo's runs alternate in rounds on
fresh copies of the accounts, and the best of each is kept. Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acquirer.channels.base import CardAuthorisation, Operation  # noqa: E402
from acquirer.channels.issuer import IssuerSimulator  # noqa: E402
from acquirer.channels.remote import request_message  # noqa: E402
from acquirer.childproc import Messages, command  # noqa: E402
from keys.emv import CardFamily  # noqa: E402
from keys.hsm import HSM  # noqa: E402
from tests.acquirer.cards import luhn_complete, personalise  # noqa: E402

MERCHANT = "898440358120001"
TERMINALS = 16
GROUPS = (1, 4)

# The baseline child: the issuer process's loop (read all that waits, unpickle each
# request, pickle an answer each, write them) with a canned answer instead of a decision.
ECHO = r"""
import os, select, sys
from acquirer.channels.base import card_result
from acquirer.childproc import Messages, pack
from acquirer.protocol import ResponseCode

answer = card_result(ResponseCode.APPROVED, "000001", bytes(10), "approved", 10**11)
messages, out = Messages(), sys.stdout.buffer
out.write(pack(("ready",)))
out.flush()
while True:
    data = os.read(0, 1 << 16)
    if not data:
        break
    answers = [pack((ident, answer)) for ident, _ in messages.feed(data)]
    out.write(b"".join(answers))
    out.flush()
"""


def prepare(workdir: Path, cards: int) -> tuple[list, str]:
    """The issuer's HSM and accounts, as bench/host.py's `prepare` makes them."""
    hsm = HSM.open(workdir / "hsm.db", workdir / "lmk")
    hsm._db.execute("PRAGMA synchronous=NORMAL")  # card issuance before the run: no fsync per card
    issuer = IssuerSimulator(hsm, workdir / "issuer.db", durable=False)
    made = [personalise(hsm, issuer, CardFamily.PBOC_SM4, pan=luhn_complete(f"62149886{k:010d}"), profile="bench",
                        balance=10**11, replace=True) for k in range(cards)]
    zpk = issuer.zpk_name
    issuer.close()
    hsm.close()
    return made, zpk


def requests(cards: list, count: int, first: int, taps: int = 0) -> list[bytes]:
    """`count` sales as the host pickles them: the request CardFlows.sale builds (a contactless
    sale without PIN, field 55 as the terminal sent it), each card tapped in turn (its ATC rises).
    `taps`: each terminal's card is tapped that many times, then the next one is (from the
    first card on, whatever `first`): `cards_for(count, taps)` cards."""
    out = []
    for n in range(first, first + count):
        if taps:
            i = n - first
            card = cards[i % TERMINALS + TERMINALS * (i // TERMINALS // taps)]
        else:
            card = cards[n % len(cards)]
        amount = 100 + n % 900
        request = CardAuthorisation(Operation.SALE, card.pan, "01", "2712", amount, "156", f"B{n % TERMINALS:07d}",
                                    MERCHANT, f"{n % 999_999 + 1:06d}", card.field55(amount), None, None,
                                    risk_flags=())
        out.append(request_message(n, request))
    return out


def cards_for(count: int, taps: int) -> int:
    """The cards `requests(..., count, first, taps)` taps."""
    return TERMINALS * -(-count // (TERMINALS * taps))


def cpu_ns(pid: int) -> int:
    """CPU nanoseconds so far of a process's threads (the scheduler's own account)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def answers_in(messages: list) -> int:
    """Answers in what the child wrote: one per message, or a group's list in one."""
    return sum(len(m) if isinstance(m, list) else 1 for m in messages)


def drive(argv: list[str], env: dict, warm: list[bytes], timed: list[bytes], group: int) -> float:
    """Start a child, send `warm` then `timed` in groups (each group's answers awaited before
    the next), and return the child's CPU microseconds per timed sale."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        messages = Messages()
        fd_in, fd_out = proc.stdin.fileno(), proc.stdout.fileno()

        def exchange(batch: list[bytes]) -> None:
            for i in range(0, len(batch), group):
                os.write(fd_in, b"".join(batch[i:i + group]))
                got = 0
                while got < len(batch[i:i + group]):
                    data = os.read(fd_out, 1 << 16)
                    if not data:
                        raise RuntimeError("the child closed its pipe")
                    got += answers_in(messages.feed(data))

        ready = []
        while not ready:
            ready = messages.feed(os.read(fd_out, 1 << 16))
        assert ready == [("ready",)], ready
        exchange(warm)
        before = cpu_ns(proc.pid)
        exchange(timed)
        used = cpu_ns(proc.pid) - before
    finally:
        proc.stdin.close()
        proc.wait(30)
        proc.stdout.close()
    return used / 1000 / len(timed)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sales", type=int, default=3000, help="timed sales per run (default 3000)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds, best kept (default 3)")
    ap.add_argument("--cards", type=int, default=300, help="card accounts (default 300)")
    ap.add_argument("--taps", type=int, default=0,
                    help="taps per card before a fresh one, as in the host (bench/host.py: 4); default: --cards go round")
    ap.add_argument("--dir", default=None, help="where the files go (default: a new temporary directory)")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="issuer-cpu-", dir=args.dir))
    try:
        master = workdir / "master"
        master.mkdir()
        warm_n = 200
        cards, zpk = prepare(master, cards_for(warm_n + args.sales, args.taps) if args.taps else args.cards)
        best = {(way, g): float("inf") for way in ("issuer", "echo") for g in GROUPS}
        first = 0
        for r in range(args.rounds):
            for g in GROUPS:
                batch = requests(cards, warm_n + args.sales, first, args.taps)
                first += warm_n + args.sales
                run = workdir / f"run{r}-{g}"
                shutil.copytree(master, run)  # the same accounts each time; their ATCs rise across runs
                argv, env = command("acquirer.channels.remote", str(run / "hsm.db"), str(run / "lmk"),
                                    str(run / "issuer.db"), zpk)
                best["issuer", g] = min(best["issuer", g], drive(argv, env, batch[:warm_n], batch[warm_n:], g))
                argv, env = command("acquirer.channels.remote")
                argv[-2:] = ["-c", ECHO]  # python -c ECHO, with the project's PYTHONPATH
                best["echo", g] = min(best["echo", g], drive(argv, env, batch[:warm_n], batch[warm_n:], g))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    cards_said = f"{args.taps} taps per card" if args.taps else f"{args.cards} cards"
    print(f"issuer process CPU us per sale ({args.sales} sales, {cards_said}, best of {args.rounds})")
    print(f"{'group':>5s} {'issuer':>8s} {'echo (baseline)':>16s} {'ratio':>6s}")
    out = {"sales": args.sales, "taps": args.taps}
    for g in GROUPS:
        issuer, echo = best["issuer", g], best["echo", g]
        print(f"{g:5d} {issuer:8.1f} {echo:16.1f} {issuer / echo:6.2f}")
        out.update({f"issuer_us_g{g}": round(issuer, 1), f"echo_us_g{g}": round(echo, 1),
                    f"ratio_g{g}": round(issuer / echo, 2)})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
