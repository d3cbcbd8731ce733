"""~100k mixed SM2 operations must not grow the resident set: every OpenSSL object freed.

Two threads share the keys (ctypes drops the GIL inside libcrypto, so this halves the
wall time on two cores and exercises concurrent use); both threads live through the
warm-up and the measured run, so their stacks and malloc arenas are paid before the
first measurement.
"""
from __future__ import annotations

import gc
import os
import threading
import time

import pytest

from keys.errors import DecryptionError, InvalidKey, InvalidSignature
from keys.sm2 import SM2PrivateKey, SM2PublicKey

THREADS = 2
OPS = 100_000
WARMUP_OPS = 6_000
MAX_GROWTH = 1024 * 1024  # a clean run grows ~200 KiB; one leaked BIGNUM per key import adds ~1.2 MiB


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _work(n_ops: int, seed: int, key: SM2PrivateKey, other: SM2PrivateKey) -> int:
    """Run n_ops operations from a fixed 10-step cycle; return how many were done."""
    pub = key.public_key
    done = 0
    i = seed
    while done < n_ops:
        msg = i.to_bytes(8, "big") * (1 + i % 7)
        step = i % 10
        if step in (0, 1, 2):
            sig = key.sign(msg, b"ID-%d" % (i % 3) if step == 2 else b"1234567812345678")
            done += 1
            if step == 2:
                pub.verify(sig, msg, b"ID-%d" % (i % 3))
                done += 1
        elif step in (3, 4):
            sig = key.sign(msg)
            pub.verify(sig, msg)
            with pytest.raises(InvalidSignature):  # failure path: error queue must be drained
                pub.verify(sig, msg + b"x")
            done += 3
        elif step == 5:
            ct = pub.encrypt(msg)
            assert key.decrypt(ct) == msg
            done += 2
        elif step == 6:
            ct = bytearray(pub.encrypt(msg))
            ct[70] ^= 1  # C3 mismatch, detected inside OpenSSL
            with pytest.raises(DecryptionError):
                key.decrypt(bytes(ct))
            done += 2
        elif step == 7:
            p = SM2PublicKey.from_der(other.public_key.to_der())
            SM2PublicKey.from_pem(p.to_pem())
            SM2PublicKey.from_bytes(p.to_bytes(compressed=True))
            with pytest.raises(InvalidKey):
                SM2PublicKey.from_der(b"\x30\x03\x02\x01\x00")
            done += 6
        elif step == 8:
            k = SM2PrivateKey.from_der(other.to_der())
            k.private_bytes()
            k.public_key.encrypt(b"k")
            done += 5
        else:
            k = SM2PrivateKey.generate() if i % 20 == 9 else SM2PrivateKey.from_pem(other.to_pem())
            k.public_key.verify(k.sign(msg), msg)
            done += 4
        i += 1
    return done


@pytest.mark.slow
def test_rss_stable_over_100k_operations():
    key, other = SM2PrivateKey.generate(), SM2PrivateKey.generate()
    start = threading.Barrier(THREADS + 1)
    measured = threading.Barrier(THREADS + 1)
    finished = threading.Barrier(THREADS + 1)
    counts, errors = [0] * THREADS, []

    def worker(t: int) -> None:
        try:
            start.wait()
            _work(WARMUP_OPS // THREADS, t * 5, key, other)
            measured.wait()  # main thread reads RSS while both threads are parked
            measured.wait()
            counts[t] = _work(OPS // THREADS, t * 5, key, other)
        except BaseException as e:  # reported by the main thread
            errors.append(e)
            measured.abort()
        finally:
            try:
                finished.wait()
            except threading.BrokenBarrierError:
                pass

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(THREADS)]
    for t in threads:
        t.start()
    start.wait()
    try:
        measured.wait()
        gc.collect()
        before = _rss()
        t0 = time.perf_counter()
        measured.wait()
    except threading.BrokenBarrierError:
        pass
    finished.wait()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    elapsed = time.perf_counter() - t0
    gc.collect()
    growth = _rss() - before
    total = sum(counts)
    print(f"{total} SM2 operations in {elapsed:.1f}s on {THREADS} threads, RSS growth {growth / 1024:.0f} KiB")
    assert total >= OPS
    assert growth < MAX_GROWTH, f"RSS grew by {growth / 1024:.0f} KiB over {total} SM2 operations"
