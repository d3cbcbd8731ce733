"""`acquirer face ...`: enrol customers, list them, unlock and withdraw face pay.

    acquirer face enrol --customer C001 --wallet W-6222001 --photo a.jpg b.jpg c.jpg
    acquirer face unlock --customer C001 --reason "called the customer back"

The passcode is typed twice at a hidden prompt, or read as one line from standard input
with --passcode-stdin (scripts); never on the command line, where `ps` would show it.
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from pathlib import Path


def _open(args):
    from keys.hsm import HSM

    from .service import FacePay

    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    return FacePay(state / "face.db", HSM.open(state / "hsm.db", state / "lmk"))


def _operator(args) -> str:
    return args.operator or os.environ.get("USER") or "operator"


def _fail(message: str) -> int:
    print(f"acquirer face: {message}", file=sys.stderr)
    return 2


def _read_passcode(args) -> str:
    if args.passcode_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("customer's payment passcode: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passcodes differ")
    return first


def _cmd_enrol(args) -> int:
    from .service import FaceEnrolError

    missing = [p for p in args.photo if not Path(p).is_file()]
    if missing:
        return _fail(f"no such photo: {', '.join(missing)}")
    try:
        passcode = _read_passcode(args)
    except (ValueError, EOFError) as exc:
        return _fail(str(exc) or "no passcode given")
    pay = _open(args)
    try:
        result = pay.enrol(args.customer, args.photo, args.wallet, passcode, replace=args.replace,
                           operator=_operator(args))
    except FaceEnrolError as exc:
        return _fail(f"customer {args.customer} not enrolled: {exc}")
    finally:
        pay.close()
    nearest = "none enrolled" if result.nearest_other == float("inf") else f"{result.nearest_other:.2f}"
    print(f"customer {result.customer_id} enrolled: {result.templates} templates, wallet {result.wallet_account}, "
          f"own photos within {result.spread:.2f}, nearest other customer {nearest}")
    for note in result.notes:
        print(f"note: {note}")
    return 0


def _cmd_list(args) -> int:
    pay = _open(args)
    try:
        counts: dict[str, int] = {}
        for _row, customer_id, *_ in pay.store.templates():
            counts[customer_id] = counts.get(customer_id, 0) + 1
        for c in pay.store.customers():
            state = "LOCKED" if c.locked else (f"{c.failures} wrong" if c.failures else "")
            when = time.strftime("%Y-%m-%d", time.localtime(c.enrolled_at))
            print(f"{c.customer_id:32s} wallet {c.wallet_account:20s} {counts.get(c.customer_id, 0):2d} templates "
                  f"enrolled {when} {state}")
    finally:
        pay.close()
    return 0


def _cmd_unlock(args) -> int:
    from .store import FaceStoreError

    pay = _open(args)
    try:
        pay.unlock(args.customer, _operator(args), args.reason or "")
    except FaceStoreError as exc:
        return _fail(str(exc))
    finally:
        pay.close()
    print(f"face pay unlocked for customer {args.customer}")
    return 0


def _cmd_withdraw(args) -> int:
    from .store import FaceStoreError

    pay = _open(args)
    try:
        pay.withdraw(args.customer, _operator(args), args.reason or "")
    except FaceStoreError as exc:
        return _fail(str(exc))
    finally:
        pay.close()
    print(f"face data of customer {args.customer} deleted")
    return 0


def _cmd_events(args) -> int:
    pay = _open(args)
    try:
        for at, customer_id, event, operator, detail in pay.store.events(args.customer):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
            print(f"{when} {customer_id:20s} {event:16s} {operator:12s} {detail}")
    finally:
        pay.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `face` and its commands to the `acquirer` parser (needs the top-level --state)."""
    face = sub.add_parser("face", help="face pay: enrolment, lockout").add_subparsers(dest="face_command",
                                                                                    required=True)
    p = face.add_parser("enrol", help="enrol a customer from photos, linked to a wallet account and a passcode")
    p.add_argument("--customer", required=True, help="customer id (letters, digits, _ . -)")
    p.add_argument("--photo", required=True, nargs="+", metavar="FILE", help="photos of the customer (2-5 advised)")
    p.add_argument("--wallet", required=True, help="wallet account debited by face pay")
    p.add_argument("--passcode-stdin", action="store_true", help="read the passcode from standard input")
    p.add_argument("--replace", action="store_true", help="re-enrol an enrolled customer (a lock stays)")
    p.add_argument("--operator", help="who enrols (default $USER), for the audit trail")
    p.set_defaults(func=_cmd_enrol)
    face.add_parser("list", help="enrolled customers and their lock state").set_defaults(func=_cmd_list)
    for name, func, text in (("unlock", _cmd_unlock, "unlock face pay locked by wrong passcodes"),
                             ("withdraw", _cmd_withdraw, "delete a customer's face data and passcode")):
        p = face.add_parser(name, help=text)
        p.add_argument("--customer", required=True)
        p.add_argument("--reason")
        p.add_argument("--operator")
        p.set_defaults(func=func)
    p = face.add_parser("events", help="the face pay audit trail")
    p.add_argument("--customer")
    p.set_defaults(func=_cmd_events)
