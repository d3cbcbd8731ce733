#!/usr/bin/env python3
"""APDU round trip through pyscard -> pcscd -> vpcd -> virtual card, against raw TCP.

Starts a private pcscd and the virtual card (a thread, or with --card-process its own
process), sends --count SELECT APDUs through `CardSession.transmit`, then times a raw
loopback TCP exchange of the same sizes in the same run. Prints a report and, last,
exactly one JSON line with at least apdu_rtt_median_ms and apdu_rtt_p99_ms.

    .venv/bin/python bench/pcsc_rtt.py [--count 2000] [--card-process]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hardware.apdu import command  # noqa: E402 - after the path fix for a plain checkout
from hardware.card_apps import TEST_AID, Iso7816TestApplication  # noqa: E402
from hardware.pcscd import PrivatePcscd  # noqa: E402
from hardware.reader import Reader  # noqa: E402
from hardware.vcard import VirtualCard  # noqa: E402

TARGET_MEDIAN_MS = 0.5


def percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    return sorted_ms[max(0, math.ceil(q * len(sorted_ms)) - 1)]


def summary(samples_ns: list[int]) -> dict[str, float]:
    ms = sorted(s / 1e6 for s in samples_ns)
    return {
        "median": statistics.median(ms),
        "p99": percentile(ms, 0.99),
        "mean": statistics.fmean(ms),
        "min": ms[0],
        "max": ms[-1],
    }


def time_apdus(session, apdu: bytes, count: int, warmup: int) -> tuple[list[int], bytes]:
    for _ in range(warmup):
        session.transmit(apdu)
    samples = []
    response = b""
    clock = time.perf_counter_ns
    for _ in range(count):
        start = clock()
        data, sw = session.transmit(apdu)
        samples.append(clock() - start)
        if sw != 0x9000:
            raise SystemExit(f"SELECT answered {sw:04X}")
        response = data + sw.to_bytes(2, "big")
    return samples, response


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return bytes(data)


def time_raw_tcp(request: bytes, response: bytes, count: int, warmup: int) -> list[int]:
    """The same framed request/response sizes over loopback, both ends tuned alike."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    framed_response = len(response).to_bytes(2, "big") + response

    def serve() -> None:
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                size = int.from_bytes(_recv_exactly(conn, 2), "big")
                _recv_exactly(conn, size)
                conn.sendall(framed_response)
        except (ConnectionError, OSError):
            pass
        finally:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = socket.create_connection(server.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    framed_request = len(request).to_bytes(2, "big") + request
    samples = []
    clock = time.perf_counter_ns
    try:
        for i in range(warmup + count):
            start = clock()
            client.sendall(framed_request)
            size = int.from_bytes(_recv_exactly(client, 2), "big")
            _recv_exactly(client, size)
            if i >= warmup:
                samples.append(clock() - start)
    finally:
        client.close()
        thread.join(5)
        server.close()
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--card-process",
        action="store_true",
        help="serve the card from `python -m hardware.vcard` instead of a thread",
    )
    args = parser.parse_args(argv)

    select = command(0x00, 0xA4, 0x04, 0x00, TEST_AID, le=0)
    card_process = None
    started = time.monotonic()
    with PrivatePcscd() as daemon:
        card = None
        try:
            if args.card_process:
                card_process = subprocess.Popen(
                    [sys.executable, "-m", "hardware.vcard", "--profile", "iso7816-test",
                     "--port", str(daemon.vpcd_port)],
                    stdout=subprocess.DEVNULL,
                )
            else:
                card = VirtualCard(Iso7816TestApplication(), port=daemon.vpcd_port)
                card.insert(timeout=10)
            with Reader.open(daemon.reader_names[0]) as reader:
                with reader.wait_for_card(timeout=10) as session:
                    apdu_ns, response = time_apdus(session, select, args.count, args.warmup)
                    protocol = session.protocol
        finally:
            if card is not None:
                card.remove()
            if card_process is not None:
                card_process.terminate()
                card_process.wait(10)
    tcp_ns = time_raw_tcp(select, response, args.count, args.warmup)

    apdu, tcp = summary(apdu_ns), summary(tcp_ns)
    ratio = apdu["median"] / tcp["median"]
    where = "process" if args.card_process else "thread"
    print(f"PC/SC APDU round trip: {args.count} SELECT ({len(select)} B -> {len(response)} B), "
          f"{protocol}, card in a {where}")
    print(f"  pyscard->pcscd->vpcd->card  median {apdu['median']:.3f} ms  p99 {apdu['p99']:.3f} ms  "
          f"mean {apdu['mean']:.3f} ms  min {apdu['min']:.3f} ms  max {apdu['max']:.3f} ms")
    print(f"  raw loopback TCP, same size median {tcp['median']:.3f} ms  p99 {tcp['p99']:.3f} ms  "
          f"mean {tcp['mean']:.3f} ms")
    print(f"  ratio (median APDU / median TCP) {ratio:.1f}x; target median <= {TARGET_MEDIAN_MS} ms: "
          f"{'met' if apdu['median'] <= TARGET_MEDIAN_MS else 'MISSED'}; "
          f"run took {time.monotonic() - started:.1f} s")
    print(json.dumps({
        "apdu_rtt_median_ms": round(apdu["median"], 4),
        "apdu_rtt_p99_ms": round(apdu["p99"], 4),
        "apdu_rtt_mean_ms": round(apdu["mean"], 4),
        "tcp_rtt_median_ms": round(tcp["median"], 4),
        "tcp_rtt_p99_ms": round(tcp["p99"], 4),
        "ratio_median": round(ratio, 2),
        "count": args.count,
        "card": where,
        "protocol": protocol,
        "target_median_ms": TARGET_MEDIAN_MS,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
