"""`pos reader doctor`: check the PC/SC chain link by link and say how to fix it.

Package -> daemon -> driver -> reader -> card. Each check names what is missing and
the command that fixes it; a check that depends on a failed one is skipped.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hardware.errors import HardwareError, pcscd_socket_path
from hardware.pcscd import VPCD_DRIVER

PACKAGES = ("pcscd", "vsmartcard-vpcd", "libpcsclite1")
SYSTEM_CONF_DIR = "/etc/reader.conf.d"


@dataclass
class Check:
    """One line of the report: ok True (fine), False (a problem), None (skipped/info)."""

    name: str
    ok: bool | None
    message: str
    fix: str = ""


def check_packages() -> list[Check]:
    dpkg_query = shutil.which("dpkg-query")
    if dpkg_query is None:
        return [Check("packages", None, "cannot check packages: dpkg-query not found (not Debian?)")]
    checks = []
    for package in PACKAGES:
        result = subprocess.run(
            [dpkg_query, "-W", "-f=${Status}\t${Version}", package],
            capture_output=True,
            text=True,
        )
        status, _, version = result.stdout.partition("\t")
        if result.returncode == 0 and status.strip() == "install ok installed":
            checks.append(Check(f"package {package}", True, f"installed ({version})"))
        else:
            checks.append(
                Check(
                    f"package {package}",
                    False,
                    "not installed",
                    f"sudo apt-get install -y --no-install-recommends {package}",
                )
            )
    return checks


def check_daemon() -> tuple[Check, object | None]:
    """(check, an open PcscContext or None)."""
    path = pcscd_socket_path()
    try:
        from hardware.reader import PcscContext

        context = PcscContext()
    except HardwareError:
        where = "" if os.path.exists(path) else f" ({path} does not exist)"
        return (
            Check(
                "daemon",
                False,
                f"pcscd is not running on {path}{where}",
                "sudo systemctl start pcscd.socket   (or: sudo pcscd; "
                "unset PCSCLITE_CSOCK_NAME if it points at a stopped private pcscd)",
            ),
            None,
        )
    except ImportError as exc:
        return Check("daemon", False, f"pyscard cannot load: {exc}", "scripts/setup"), None
    return Check("daemon", True, f"pcscd answers on {path}"), context


def _vpcd_confs(conf_dir: str) -> list[tuple[Path, dict[str, str]]]:
    found = []
    for path in sorted(Path(conf_dir).glob("*")):
        if not path.is_file():
            continue
        entries: dict[str, str] = {}
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = line.strip().partition(" ")
            if key and not key.startswith("#"):
                entries[key.upper()] = value.strip().strip('"')
        if "libifdvpcd" in entries.get("LIBPATH", ""):
            found.append((path, entries))
    return found


def check_driver(conf_dir: str) -> Check:
    if not Path(VPCD_DRIVER).exists():
        return Check(
            "driver",
            False,
            f"vpcd driver {VPCD_DRIVER} is missing",
            "sudo apt-get install -y --no-install-recommends vsmartcard-vpcd",
        )
    if not Path(conf_dir).is_dir():
        return Check("driver", False, f"reader conf dir {conf_dir} does not exist",
                     "sudo apt-get install --reinstall vsmartcard-vpcd")
    confs = _vpcd_confs(conf_dir)
    if not confs:
        return Check(
            "driver",
            False,
            f"no vpcd entry in {conf_dir}",
            "sudo apt-get install --reinstall vsmartcard-vpcd   (writes /etc/reader.conf.d/vpcd), "
            "then restart pcscd",
        )
    path, entries = confs[0]
    libpath = entries.get("LIBPATH", "")
    if not Path(libpath).exists():
        return Check("driver", False, f"{path} names LIBPATH {libpath}, which does not exist",
                     f"point LIBPATH at {VPCD_DRIVER}")
    try:
        port = int(entries.get("CHANNELID", ""), 0)
    except ValueError:
        return Check("driver", False, f"{path} has no numeric CHANNELID", "CHANNELID 35963")
    return Check("driver", True, f"vpcd configured in {path}, slots on TCP ports {port} and {port + 1}")


def check_reader(context, wanted: str | None) -> tuple[Check, str | None]:
    from hardware.reader import choose_reader

    try:
        names = context.readers()
        name = choose_reader(names, wanted)
    except HardwareError as exc:
        fix = "pick one of the readers listed" if wanted else (
            "plug in a USB NFC reader, or install vsmartcard-vpcd and restart pcscd "
            "(sudo systemctl restart pcscd)"
        )
        return Check("reader", False, str(exc), fix), None
    listing = "; ".join(f"{i}: {n}" for i, n in enumerate(names))
    return Check("reader", True, f"using {name!r} (present: {listing})"), name


def check_card(context, reader: str, require_card: bool) -> Check:
    from hardware.reader import Reader

    try:
        present = Reader(reader, context).card_present()
    except HardwareError as exc:
        return Check("card", False, str(exc))
    if present:
        return Check("card", True, f"a card is on {reader!r}")
    return Check(
        "card",
        False if require_card else None,
        f"no card on {reader!r}",
        "tap a card, or: pos card insert --profile iso7816-test",
    )


def run_checks(
    conf_dir: str = SYSTEM_CONF_DIR, reader: str | None = None, require_card: bool = False
) -> list[Check]:
    checks = check_packages()
    daemon, context = check_daemon()
    checks.append(daemon)
    checks.append(check_driver(conf_dir))
    if context is None:
        checks.append(Check("reader", None, "skipped: needs a running pcscd"))
        checks.append(Check("card", None, "skipped: needs a running pcscd"))
        return checks
    try:
        reader_check, name = check_reader(context, reader)
        checks.append(reader_check)
        if name is None:
            checks.append(Check("card", None, "skipped: needs a reader"))
        else:
            checks.append(check_card(context, name, require_card))
    finally:
        context.close()
    return checks


def render(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        mark = {True: "ok  ", False: "FAIL", None: "--  "}[check.ok]
        lines.append(f"{mark}  {check.name}: {check.message}")
        if check.ok is False and check.fix:
            lines.append(f"      fix: {check.fix}")
    problems = sum(1 for c in checks if c.ok is False)
    lines.append("all good" if problems == 0 else f"{problems} problem(s) found")
    return "\n".join(lines)


def all_well(checks: list[Check]) -> bool:
    return not any(c.ok is False for c in checks)
