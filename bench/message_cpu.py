"""CPU per card sale of the event loop's message work: this code against a baseline, same run.

    .venv/bin/python bench/message_cpu.py [--sales 4000] [--rounds 5] [--baseline a44f556]

What the host's event loop pays per sale to read, check and answer the message, around
the decisions (the issuer, the ledger and risk are not here): the frame off the wire,
the pipeline's first steps (decode with field 60 and the private TLVs of field 59,
identify the terminal, verify the MAC and digest the request), what the card flow asks
of the codec and the HSM (track 2 opened under the TDK, field 55 flattened, the PAN's
token, the card sealed for the vault, the reply's fields 55 and 59), then the response
built, encoded and MACed by `Host._response` and framed.

The sales are built as bench/host.py's are (16 terminals with SM4 working keys in a
real HSM file, sealed track 2, ICC data, a signed location report in 59, MAC), with a
PIN block in some. Each version runs in a process of its own with its tree first on
sys.path (the baseline unpacked from git at `--baseline`); the two take turns round by
round, so a busy moment of the machine falls on both, and the best of `--rounds` is
kept. Measured with `thread_time` (CPU, not wall: the machine is shared). Each side
digests what it gave (the response frames byte for byte, the decoded fields, the
opened track 2, the tokens, the vault's sealed card opened again): the two must match.
Ends with one JSON line.
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
BASELINE = "a44f556"  # main before session 8's codec work
MERCHANT = "898440358120001"
TERMINALS = 16
WORKER = r"""
import gc, hashlib, pickle, sys, time
state, tree = sys.argv[1], sys.argv[2]
sys.path.insert(0, tree)
from pathlib import Path
from acquirer.host import Host
from acquirer.pipeline import Context
from acquirer.protocol import Frame, PrivateTag, ResponseCode, private_fields
from acquirer.registry import Registry
from keys.hsm import HSM, terminal_key_name
from keys.tlv import flatten, mask_pan, tlv

state = Path(state)
hsm = HSM.open(state / "hsm.db", state / "lmk")
registry = Registry(state / "registry.db")
host = Host(registry, hsm, ledger=None, card_flows=None)
decode_step, identify_step, mac_step = host.steps[:3]
bodies = pickle.loads((state / "bodies.pkl").read_bytes())
ISSUER_DATA = bytes(range(10))


def sale(body: bytes, n: int, out: list) -> bytes:
    frame = Frame.decode_body(body)
    ctx = Context(frame, "bench")
    decode_step(ctx)
    identify_step(ctx)
    mac_step(ctx)
    doc = ctx.doc
    # what the card flow asks of the codec and the HSM
    track2 = hsm.open_data(terminal_key_name(ctx.terminal_id, "TDK"), bytes.fromhex(doc["35"]))
    pan, rest = track2.decode("ascii").upper().rstrip("F").replace("=", "D").split("D", 1)
    icc = flatten(bytes.fromhex(doc["55"]))
    token = hsm.token("host/TOKEN", pan.encode("ascii"))
    sealed = hsm.seal_data("host/VAULT", f'["{pan}", "{rest[:4]}", "01"]'.encode())
    ctx.reply_fields["59"] = private_fields({PrivateTag.MASKED_PAN: mask_pan(pan).encode()})
    ctx.reply_fields["37"] = f"{n:012d}"
    ctx.reply_fields["38"] = "123456"
    ctx.reply_fields["55"] = tlv(0x91, ISSUER_DATA).hex().upper()
    ctx.reply_fields["15"] = "0615"
    ctx.decide(ResponseCode.APPROVED, "approved")
    response = host._response(ctx)
    wire = frame.reply(response).encode()
    out.append((ctx.code, ctx.maced, ctx.digest, doc, ctx.f60, ctx.private, track2, icc, token, sealed, wire))
    return wire


def sales(out: list) -> int:
    gc.collect()
    cpu = time.thread_time_ns
    t = cpu()
    for n, body in enumerate(bodies):
        sale(body, n, out)
    return cpu() - t


def one_round() -> tuple[int, str]:
    out = []
    used = sales(out)
    digest = hashlib.sha256()
    for code, maced, dig, doc, f60, private, track2, icc, token, sealed, wire in out:
        opened = hsm.open_data("host/VAULT", sealed)  # a random IV: compare what it opens to
        digest.update(repr((code.value, maced, dig, doc, tuple(f60), sorted((int(k), v) for k, v in private.items()),
                            track2, icc, token, opened, wire)).encode())
    return used, digest.hexdigest()[:16]


for line in sys.stdin:
    if line.strip() == "bare":  # for callgrind: the sales only, no digest, no report
        sales([])
        continue
    used, digest = one_round()
    print(used, digest, flush=True)
"""


def prepare(state: Path, sales: int) -> None:
    """The HSM and registry files and the request frames, made with this tree's code."""
    sys.path.insert(0, str(ROOT))
    from acquirer.protocol import Field60, Frame, PrivateTag, encode, private_fields
    from acquirer.registry import Registry
    from keys.hsm import HSM, terminal_key_name
    from keys.tlv import encode_dict

    rng = random.Random(8)
    hsm = HSM.open(state / "hsm.db", state / "lmk")
    registry = Registry(state / "registry.db")
    registry.add_merchant(MERCHANT, "Bench shop", latitude=31.2304, longitude=121.4737)
    tids = [f"B{i:07d}" for i in range(TERMINALS)]
    for tid in tids:
        registry.add_terminal(tid, MERCHANT)
        for usage in ("TAK", "TDK", "TPK"):
            hsm.generate(terminal_key_name(tid, usage), "SM4", usage)
    hsm.generate("host/VAULT", "SM4", "TDK")
    hsm.generate("host/TOKEN", "SM4", "TOKEN")
    reports = {tid: b"LOC1" + rng.randbytes(117) for tid in tids}  # a signed report's size; not checked here
    bodies = []
    for i in range(sales):
        tid = tids[i % TERMINALS]
        amount = 100 + (i * 37) % 9_900
        pan = f"62149886{i % 997:05d}{i % 89:05d}"[:18] + "7"
        track2 = hsm.seal_data(terminal_key_name(tid, "TDK"), f"{pan}D3012201{i % 1000:03d}".encode())
        icc = {0x9F02: amount.to_bytes(6), 0x9F1A: b"\x01\x56", 0x95: bytes(5), 0x5F2A: b"\x01\x56",
               0x9A: b"\x25\x06\x15", 0x9C: b"\x00", 0x9F37: rng.randbytes(4), 0x82: b"\x7c\x00",
               0x9F36: (i % 65535).to_bytes(2), 0x9F27: b"\x80", 0x9F33: b"\xe0\xe1\xc8",
               0x9F10: bytes.fromhex("07010103a00000040a01000000000000000000"), 0x9F26: rng.randbytes(8)}
        private = {PrivateTag.LOCATION: reports[tid]}
        if i % 50 == 0:
            private[PrivateTag.RISK_FLAGS] = b"RELAY_SUSPECTED"
        doc = {"t": "0200", "3": "000000", "4": f"{amount:012d}", "11": f"{i // TERMINALS % 999_999 + 1:06d}",
               "22": "071" if i % 10 == 0 else "072", "23": "001", "25": "00", "35": track2.hex().upper(),
               "41": tid, "42": MERCHANT, "49": "156", "55": encode_dict(icc).hex().upper(),
               "59": private_fields(private), "60": Field60("22", "000001").encode()}
        if i % 10 == 0:
            doc["52"] = rng.randbytes(16).hex().upper()
        message = encode(doc, lambda data: hsm.generate_mac(terminal_key_name(tid, "TAK"), data))
        bodies.append(Frame(message, 0x0001, 0x0002).encode()[2:])
    (state / "bodies.pkl").write_bytes(pickle.dumps(bodies))
    registry.close()
    hsm.close()


def unpack(rev: str, into: Path, paths: tuple[str, ...] = ("acquirer", "keys", "hardware", "terminal")) -> Path:
    """The tree at `rev` (by default the packages the worker imports), unpacked from git into `into`."""
    into.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, *paths], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def start(state: Path, tree: Path, copy_to: Path, worker: str = WORKER) -> subprocess.Popen:
    """`python -c worker STATE TREE` on its own copy of `state`, talking over its stdin and stdout."""
    shutil.copytree(state, copy_to)  # each side on its own files
    return subprocess.Popen([sys.executable, "-c", worker, str(copy_to), str(tree)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sales", type=int, default=4_000, help="sales per round (default 4,000)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds, best kept (default 5)")
    ap.add_argument("--baseline", default=BASELINE, help=f"git revision to compare with (default {BASELINE})")
    ap.add_argument("--prepare", metavar="DIR", help="only write the state and the sales to DIR")
    ap.add_argument("--worker", nargs=2, metavar=("STATE", "TREE"),
                    help="run one side on a state made by --prepare, a round per line 'round' on stdin "
                         "('bare': the sales alone, unreported: for counting instructions under callgrind)")
    args = ap.parse_args()
    if args.worker:
        sys.argv = [sys.argv[0], *args.worker]
        exec(compile(WORKER, "message_cpu-worker", "exec"), {"__name__": "__worker__"})
        return 0
    if args.prepare:
        Path(args.prepare).mkdir(parents=True)
        prepare(Path(args.prepare), args.sales)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="message-cpu-"))
    try:
        (workdir / "state").mkdir()
        prepare(workdir / "state", args.sales)
        sides = {"baseline": start(workdir / "state", unpack(args.baseline, workdir / "baseline"), workdir / "b"),
                 "now": start(workdir / "state", ROOT, workdir / "n")}
        best: dict[str, int] = {}
        digests: dict[str, set] = {label: set() for label in sides}
        for r in range(args.rounds):
            for label, proc in (sides.items() if r % 2 else reversed(sides.items())):
                proc.stdin.write("round\n")
                proc.stdin.flush()
                used, digest = proc.stdout.readline().split()
                best[label] = min(best.get(label, 1 << 62), int(used))
                digests[label].add(digest)
        for proc in sides.values():
            proc.stdin.close()
            proc.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    base, now = (best[k] / 1000 / args.sales for k in ("baseline", "now"))
    same = len(digests["now"]) == 1 and digests["now"] == digests["baseline"]
    print(f"event loop's message work per card sale, CPU us, {args.sales} sales, best of {args.rounds}")
    print(f"baseline ({args.baseline}) {base:8.1f}   outputs {sorted(digests['baseline'])}")
    print(f"now                 {now:8.1f}   outputs {sorted(digests['now'])}")
    print(f"same outputs: {'yes' if same else 'NO'}; ratio now/baseline: {now / base:.2f}")
    print(json.dumps({"sales": args.sales, "rounds": args.rounds, "baseline": args.baseline,
                      "baseline_us": round(base, 2), "now_us": round(now, 2), "ratio": round(now / base, 3),
                      "same_outputs": same, "cpus": os.cpu_count()}))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
