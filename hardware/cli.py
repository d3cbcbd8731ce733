"""`pos reader ...` and `pos card ...`: the hardware commands of the `pos` CLI."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hardware.errors import HardwareError

CARD_HELP = (
    "virtual card on the vpcd reader: simulated EMV cards (pboc-sm-*, qvsdc-rsa, hce-wallet, faulty-*: see docs/cards.md) "
    "and reader test applications (iso7816-test, echo)"
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the hardware subcommands to the `pos` parser."""
    reader = sub.add_parser("reader", help="card readers (PC/SC)")
    reader_sub = reader.add_subparsers(dest="reader_command", required=True)

    p = reader_sub.add_parser("list", help="list the readers pcscd knows")
    p.set_defaults(func=_guarded(_cmd_reader_list))

    p = reader_sub.add_parser(
        "doctor", help="check packages, pcscd, the vpcd driver, readers and the card"
    )
    p.add_argument("--reader", help="reader name substring or index (default: the first)")
    p.add_argument(
        "--conf-dir",
        default="/etc/reader.conf.d",
        help="reader.conf.d directory of the pcscd in use (default %(default)s)",
    )
    p.add_argument("--require-card", action="store_true", help="fail when no card is present")
    p.set_defaults(func=_cmd_reader_doctor)

    from hardware.vcard import add_card_arguments

    card = sub.add_parser("card", help=CARD_HELP)
    card_sub = card.add_subparsers(dest="card_command", required=True)

    p = card_sub.add_parser(
        "insert",
        help="put a virtual card on the vpcd reader (foreground until Ctrl-C, or --daemon)",
        description=CARD_HELP,
    )
    add_card_arguments(p)
    p.add_argument("--daemon", action="store_true", help="run in the background with a pidfile")
    p.add_argument("--state-dir", default=None, help="where the pidfile goes (default: %s)" % _default_state_dir())
    p.set_defaults(func=_guarded(_cmd_card_insert))

    p = card_sub.add_parser("remove", help="take off the card that `pos card insert --daemon` put on")
    p.add_argument("--port", type=int, default=None, help="vpcd port of the card (default 35963)")
    p.add_argument("--state-dir", default=None)
    p.set_defaults(func=_guarded(_cmd_card_remove))

    from hardware.cardread import register_card_read

    register_card_read(card_sub)


def _guarded(command):
    """Typed hardware errors become one line on stderr and exit status 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except HardwareError as exc:
            print(f"pos: {exc}", file=sys.stderr)
            return 1

    return run


def _cmd_reader_list(args: argparse.Namespace) -> int:
    from hardware.errors import NoReader
    from hardware.reader import PcscContext, Reader

    with PcscContext() as context:
        names = context.readers()
        if not names:
            raise NoReader()
        for index, name in enumerate(names):
            card = "card present" if Reader(name, context).card_present() else "no card"
            print(f"{index}  {name}  ({card})")
    return 0


def _cmd_reader_doctor(args: argparse.Namespace) -> int:
    from hardware.doctor import all_well, render, run_checks

    checks = run_checks(conf_dir=args.conf_dir, reader=args.reader, require_card=args.require_card)
    print(render(checks))
    return 0 if all_well(checks) else 1


def _default_state_dir() -> str:
    if os.environ.get("SOFTPOS_STATE_DIR"):
        return os.environ["SOFTPOS_STATE_DIR"]
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "softpos")


def _pidfile(state_dir: str | None, port: int) -> Path:
    return Path(state_dir or _default_state_dir()) / f"vcard-{port}.pid"


def _cmd_card_insert(args: argparse.Namespace) -> int:
    from hardware.vcard import serve

    if not args.daemon:
        return serve(args)
    pidfile = _pidfile(args.state_dir, args.port)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    if _live_vcard_pid(pidfile) is not None:
        print(f"pos: a card is already inserted on port {args.port} ({pidfile}); "
              "`pos card remove` first", file=sys.stderr)
        return 1
    pidfile.unlink(missing_ok=True)
    log_path = pidfile.with_suffix(".log")
    command = [
        sys.executable, "-m", "hardware.vcard",
        "--profile", args.profile, "--port", str(args.port), "--host", args.host,
        "--delay-ms", str(args.delay_ms), "--connect-timeout", str(args.connect_timeout),
        "--pidfile", str(pidfile),
    ]
    with open(log_path, "wb") as log:
        child = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this shell command and its Ctrl-C
        )
    # The child writes the pidfile only once vpcd took the card.
    deadline = time.monotonic() + args.connect_timeout + 5
    while time.monotonic() < deadline:
        if pidfile.exists():
            print(f"card {args.profile!r} inserted on port {args.port} (pid {child.pid}, {pidfile})")
            return 0
        if child.poll() is not None:
            print(f"pos: the card did not start:\n{log_path.read_text(errors='replace')}", file=sys.stderr)
            return 1
        time.sleep(0.02)
    child.terminate()
    child.wait()
    print(f"pos: the card was not inserted within {args.connect_timeout:g} s", file=sys.stderr)
    return 1


def _live_vcard_pid(pidfile: Path) -> int | None:
    """The pid in `pidfile` if that process is still our card (pids get reused)."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"hardware.vcard" in cmdline else None


def _cmd_card_remove(args: argparse.Namespace) -> int:
    from hardware.vcard import DEFAULT_VPCD_PORT

    port = args.port or DEFAULT_VPCD_PORT
    pidfile = _pidfile(args.state_dir, port)
    pid = _live_vcard_pid(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        print(f"pos: no card inserted with `pos card insert --daemon` on port {port}", file=sys.stderr)
        return 1
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        if _is_zombie(pid):
            break
        time.sleep(0.02)
    else:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)
    print(f"card removed from port {port}")
    return 0


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"
