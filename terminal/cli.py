"""`pos`: the terminal's command line."""
from __future__ import annotations

import argparse
import sys


def _cmd_selfcheck(args: argparse.Namespace) -> int:
    from keys.selfcheck import run

    return run(verbose=not args.quiet)


def _cmd_demo(args: argparse.Namespace) -> int:
    from terminal.demo import run

    return run(args.state, fresh=args.fresh, headless_check=args.check)


def _cmd_run(args: argparse.Namespace) -> int:
    """The cashier UI against a running host, with a real (or any named) reader. Devices not
    named on the command line come from the terminal's saved settings (Settings screen)."""
    from pathlib import Path

    from terminal.app import TerminalApp, TerminalConfig
    from terminal.settings import SCANNER_LABELS, DeviceSettings, SettingsError, open_scanner
    from terminal.ui.app import CashierApp

    try:
        saved = DeviceSettings.load(args.state)
    except SettingsError as exc:
        print(f"pos: {exc}", file=sys.stderr)
        return 2
    reader, location = args.reader or saved.reader or None, args.location or saved.location or None
    config = TerminalConfig(args.terminal, args.merchant, args.host, args.port, Path(args.state), reader,
                            args.kernel_config, args.ca_keys, location=location)
    try:
        scanner, scanner_choice = open_scanner(saved.scanner), saved.scanner
    except Exception as exc:  # the saved scanner is not here: run without, say so on the status screen
        print(f"pos: scanner {saved.scanner!r} not usable ({exc}); running without a scanner", file=sys.stderr)
        scanner, scanner_choice = None, "none"
    faces = None
    if args.camera is not None:  # face pay with the head-turn check; the camera opens on first use
        from terminal.face.capture import CameraFaces, Webcam

        faces = CameraFaces(Webcam(args.camera))
    app = TerminalApp.start(config)
    try:
        if args.activation_code:
            app.provision(args.activation_code)
        CashierApp(app, reader_label=reader or "first reader", scanner=scanner,
                   scanner_label=SCANNER_LABELS[scanner_choice], faces=faces).run()
    finally:
        app.close()
        if scanner is not None:
            scanner.close()
        if faces is not None:
            faces.camera.release()
    return 0


def _cmd_static_qr(args: argparse.Namespace) -> int:
    """Ask the host for the merchant's static code and write it as a PNG (and/or text)."""
    from pathlib import Path

    from terminal.online import HostRefused, HostUnavailable, OnlineSession
    from terminal.static_qr import fetch_static_qr

    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    # a 0800 is not MAC-ed: the secure world is not needed to ask for a public code
    session = OnlineSession(args.host, args.port, args.terminal, args.merchant, None, state / "journal.db")
    try:
        url = fetch_static_qr(session, args.out)
    except (HostRefused, HostUnavailable) as exc:
        print(f"pos: {exc}", file=sys.stderr)
        return 2
    finally:
        session.close()
    if args.text:
        from terminal.ui.sale import receipt_qr

        print(receipt_qr(url))
    print(url)
    if args.out:
        print(f"static code written to {args.out}")
    return 0


def _terminal_arguments(p: argparse.ArgumentParser) -> None:
    """Which host, which terminal, where its state is: every command that acts as the terminal."""
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5858)
    p.add_argument("--terminal", required=True, help="terminal id (8 characters)")
    p.add_argument("--merchant", required=True, help="merchant id (15 characters)")
    p.add_argument("--state", default="var/terminal")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pos", description="Soft-POS terminal")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("selfcheck", help="exercise the crypto core against known vectors")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_selfcheck)

    p = sub.add_parser("demo", help="the whole demo: acquirer, virtual reader, test cards, cashier UI")
    p.add_argument("--state", default="var/demo", help="where the demo keeps its files (default var/demo)")
    p.add_argument("--fresh", action="store_true", help="start from nothing (new keys, cards, ledger)")
    p.add_argument("--check", action="store_true", help="start everything, sign on, and exit (no UI)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("run", help="the cashier UI against a running acquirer, on a real or virtual reader")
    _terminal_arguments(p)
    p.add_argument("--reader", help='PC/SC reader name (substring), e.g. "ACR122U"; default: the first reader')
    p.add_argument("--kernel-config")
    p.add_argument("--ca-keys", help="CA public keys file (ca_keys.toml)")
    p.add_argument("--location", help="location source the TEE signs fixes from: fixed:LAT,LON[,ACC] | "
                   "nmea:PORT[@BAUD] | gpsd[:HOST[:PORT]] (a fenced terminal without one may not sell)")
    p.add_argument("--camera", type=int, help="webcam index for face pay (key f on the collect screen)")
    p.add_argument("--activation-code", help="activate, download keys and sign on first")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("static-qr", help="print the merchant's static aggregated QR code (one code for every wallet)")
    _terminal_arguments(p)
    p.add_argument("--out", help="write the code to this PNG file")
    p.add_argument("--text", action="store_true", help="also draw it here as text blocks")
    p.set_defaults(func=_cmd_static_qr)

    from hardware import cli as hardware_cli

    hardware_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
