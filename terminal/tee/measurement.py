"""The software measurement the TEE attests to: SM3 over the installed terminal code and
its kernel configuration.

Measured: every `*.py` file of the packages below (the code that runs on the terminal
and the wire contract it speaks), each named by its path relative to the install root
so that moving or renaming a file changes the value, in sorted path order so that the
order the filesystem lists them in does not; then the kernel configuration file.

    measurement = SM3("SOFTPOS-MEASURE-1" | entry*)
    entry       = u16 len | relative path (UTF-8) | SM3(file contents)
    last entry  = u16 len | "kernel-config" | SM3(config contents), or 32 zero bytes when absent

Compiled caches (`__pycache__`) are not measured: Python rebuilds them from the sources,
which are.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

from keys.hashes import sm3

MEASURED = ("terminal", "keys", "hardware", "acquirer/protocol")
DOMAIN = b"SOFTPOS-MEASURE-1"


def install_root() -> Path:
    """The directory holding the `terminal` package (the repository, or site-packages)."""
    return Path(__file__).resolve().parents[2]


def measured_files(root: Path) -> list[str]:
    found = []
    for package in MEASURED:
        for dirpath, dirnames, filenames in os.walk(root / package):
            dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.startswith(".")]
            for name in filenames:
                if name.endswith(".py"):
                    found.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(found)


def _entry(label: str, digest: bytes) -> bytes:
    raw = label.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw + digest


def measure(kernel_config: bytes | str | os.PathLike | None = None, root: str | os.PathLike | None = None) -> bytes:
    """The 32-byte measurement of the code under `root` and the kernel configuration
    (its contents, or the path of the file to read; None or a missing file: absent)."""
    root = Path(root) if root else install_root()
    parts = [DOMAIN]
    for rel in measured_files(root):
        parts.append(_entry(rel, sm3((root / rel).read_bytes())))
    if kernel_config is not None and not isinstance(kernel_config, bytes):
        path = Path(kernel_config)
        kernel_config = path.read_bytes() if path.is_file() else None
    parts.append(_entry("kernel-config", sm3(kernel_config) if kernel_config is not None else bytes(32)))
    return sm3(b"".join(parts))
