"""CPU per call of the crypto glue the host's event loop runs per card sale: this code
against a baseline, same run.

    .venv/bin/python bench/crypto_cpu.py [--calls 5000] [--rounds 7] [--baseline 18a0a2d]

Per sale the loop verifies the request's MAC (HSM.verify_mac: SM4 CBC-MAC, ISO 9797-1
padding 2, over a 230-byte request), digests the request (keys.hashes.sm3), opens track 2
under the terminal's TDK (HSM.open_data), tokenises the PAN (CardVault.token), seals the
card for the vault (CardVault.keep, grouped as in the host: HSM.seal_data and set aside)
and MACs its response (HSM.mac_function, ~120 bytes). Each is timed alone, `--calls` calls
with `thread_time` (CPU, not wall: the machine is shared), in two processes, this tree and
the baseline unpacked from git (bench/message_cpu.py's `unpack` and `start`), taking turns round by
round so that a busy moment falls on both; the best round is kept.

Both sides must give the same bytes: MACs, digests, tokens and opened track 2 are digested
and compared; the sealed cards (a random IV each) are opened by the OTHER side and must
give the cards back. Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.message_cpu import start, unpack  # noqa: E402

BASELINE = "18a0a2d"  # main before session 9's crypto work
TAK, TDK, VAULT, TOKEN = "terminal/B0000001/TAK", "terminal/B0000001/TDK", "host/VAULT", "host/TOKEN"
OPS = ("verify_mac", "sm3", "open_data", "token", "keep", "response_mac")
WORKER = r"""
import gc, hashlib, json, pickle, sys, time
state, tree = sys.argv[1], sys.argv[2]
sys.path.insert(0, tree)
from pathlib import Path
from acquirer.vault import CardVault
from keys.hashes import sm3
from keys.hsm import HSM

TAK, TDK, VAULT, TOKEN = "terminal/B0000001/TAK", "terminal/B0000001/TDK", "host/VAULT", "host/TOKEN"
state = Path(state)
hsm = HSM.open(state / "hsm.db", state / "lmk")
vault = CardVault(state / "vault.db", hsm, grouped=True)
inputs = pickle.loads((state / "inputs.pkl").read_bytes())
requests, tags, responses, tracks, cards = (inputs[k] for k in ("requests", "tags", "responses", "tracks", "cards"))
n = len(requests)
OPS = {
    "verify_mac": lambda i: hsm.verify_mac(TAK, requests[i], tags[i]),
    "sm3": lambda i: sm3(requests[i]),
    "open_data": lambda i: hsm.open_data(TDK, tracks[i]),
    "token": lambda i: vault.token(cards[i][1]),
    "keep": lambda i: vault.keep(*cards[i]),
    "response_mac": lambda i: hsm.mac_function(TAK)(responses[i]),
}


def one_round():
    used, digest = {}, hashlib.sha256()
    cpu = time.thread_time_ns
    for name, op in OPS.items():
        gc.collect()
        out = [None] * n
        t = cpu()
        for i in range(n):
            out[i] = op(i)
        used[name] = cpu() - t
        if name != "keep":  # sealed cards carry a random IV: the other side opens them instead
            digest.update(repr(out).encode())
    (_, _, rows), batch = vault.take_writes()  # the cards `keep` set aside, as the ledger process gets them
    vault.written(batch, True)
    sealed = [bytes(blob) for _, blob in rows]
    return used, digest.hexdigest()[:16], sealed


for line in sys.stdin:
    command, _, arg = line.strip().partition(" ")
    if command == "round":
        used, digest, sealed = one_round()
        Path(arg).write_bytes(pickle.dumps(sealed))
        print(json.dumps(used), digest, flush=True)
    elif command == "open":  # the other side's sealed cards, opened here
        opened = [hsm.open_data(VAULT, s) for s in pickle.loads(Path(arg).read_bytes())]
        print(hashlib.sha256(repr(opened).encode()).hexdigest()[:16], flush=True)
"""


def prepare(state: Path, calls: int) -> str:
    """The HSM file and the inputs, made with this tree's code; returns the digest the opened
    sealed cards must have."""
    import hashlib

    from keys.hsm import HSM
    from acquirer.vault import _card_json

    rng = random.Random(9)
    hsm = HSM.open(state / "hsm.db", state / "lmk")
    for name, usage in ((TAK, "TAK"), (TDK, "TDK"), (VAULT, "TDK"), (TOKEN, "TOKEN")):
        hsm.generate(name, "SM4", usage)
    requests = [rng.randbytes(rng.randint(200, 260)) for _ in range(calls)]
    pans = [f"62149886{rng.randrange(10**10):010d}7" for _ in range(calls)]
    cards = [(f"B0000001{i:012d}", pan, "3012", "01") for i, pan in enumerate(pans)]
    inputs = {
        "requests": requests,
        "tags": [hsm.generate_mac(TAK, r) for r in requests],
        "responses": [rng.randbytes(rng.randint(100, 140)) for _ in range(calls)],
        "tracks": [hsm.seal_data(TDK, f"{pan}D3012201{rng.randrange(1000):03d}".encode()) for pan in pans],
        "cards": cards,
    }
    (state / "inputs.pkl").write_bytes(pickle.dumps(inputs))
    hsm.close()
    return hashlib.sha256(repr([_card_json(*card[1:]) for card in cards]).encode()).hexdigest()[:16]


def ask(proc: subprocess.Popen, line: str) -> str:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=5_000, help="calls of each operation per round (default 5,000)")
    ap.add_argument("--rounds", type=int, default=7, help="rounds, best kept (default 7)")
    ap.add_argument("--baseline", default=BASELINE, help=f"git revision to compare with (default {BASELINE})")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="crypto-cpu-"))
    try:
        (workdir / "state").mkdir()
        cards_digest = prepare(workdir / "state", args.calls)
        sides = {"baseline": start(workdir / "state", unpack(args.baseline, workdir / "baseline"), workdir / "b", WORKER),
                 "now": start(workdir / "state", ROOT, workdir / "n", WORKER)}
        best = {label: {} for label in sides}
        digests = {label: set() for label in sides}
        opened = {label: set() for label in sides}  # what the other side's sealed cards opened to here
        for r in range(args.rounds):
            for label, proc in (sides.items() if r % 2 else reversed(sides.items())):
                used, digest = ask(proc, f"round {workdir / label}.sealed").rsplit(" ", 1)
                for op, ns in json.loads(used).items():
                    best[label][op] = min(best[label].get(op, 1 << 62), ns)
                digests[label].add(digest)
            for label, other in (("now", "baseline"), ("baseline", "now")):
                opened[label].add(ask(sides[label], f"open {workdir / other}.sealed"))
        for proc in sides.values():
            proc.stdin.close()
            proc.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    same = len(digests["now"]) == 1 and digests["now"] == digests["baseline"] \
        and opened["now"] == opened["baseline"] == {cards_digest}
    per = {label: {op: best[label][op] / 1000 / args.calls for op in OPS} for label in sides}
    total = {label: sum(per[label].values()) for label in sides}
    print(f"event loop's crypto per call, CPU us, {args.calls} calls each, best of {args.rounds}")
    print(f"{'operation':14s} {'baseline':>9s} {'now':>9s} {'ratio':>6s}")
    for op in OPS + ("per sale",):
        b, n = (total[k] if op == "per sale" else per[k][op] for k in ("baseline", "now"))
        print(f"{op:14s} {b:9.2f} {n:9.2f} {n / b:6.2f}")
    print(f"same outputs (sealed cards opened across): {'yes' if same else 'NO'}")
    print(json.dumps({"calls": args.calls, "rounds": args.rounds, "baseline": args.baseline,
                      "baseline_us": {op: round(v, 3) for op, v in per["baseline"].items()},
                      "now_us": {op: round(v, 3) for op, v in per["now"].items()},
                      "baseline_per_sale_us": round(total["baseline"], 2), "now_per_sale_us": round(total["now"], 2),
                      "ratio": round(total["now"] / total["baseline"], 3), "same_outputs": same,
                      "cpus": os.cpu_count()}))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
