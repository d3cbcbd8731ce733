"""Simulated EMV contactless cards: PBOC 3.0 (SM2/SM4) and qVSDC-style (RSA/3DES).

    card = load_card("pboc-sm-debit", state_dir, hsm)   # a CardApplication
    VirtualCard(card, port=...).insert()

Profiles are TOML files in `profiles/`; personalisation (perso.py) runs on first use
and again whenever the profile file changes. Importing this package is cheap and pulls
in no card machinery, so the card runtime's registry may list `profile_names()`.
"""
from __future__ import annotations

import os
from pathlib import Path

from .profile import PROFILE_DIR, ProfileError, load_profile, profile_names

__all__ = ["PROFILE_DIR", "ProfileError", "load_card", "open_card", "profile_names", "default_state_dir",
           "open_issuer_hsm", "load_profile"]

ISSUER_HSM_FILE, ISSUER_LMK_FILE = "issuer-hsm.db", "issuer-lmk.key"


def default_state_dir() -> Path:
    """$SOFTPOS_STATE_DIR, else $XDG_STATE_HOME/softpos, else ~/.local/state/softpos (as `pos card`)."""
    if os.environ.get("SOFTPOS_STATE_DIR"):
        return Path(os.environ["SOFTPOS_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "softpos"


def open_issuer_hsm(state_dir: str | os.PathLike):
    """The issuer simulator's HSM: `<state>/issuer-hsm.db` under `<state>/issuer-lmk.key`."""
    from keys.hsm import HSM

    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    return HSM.open(state / ISSUER_HSM_FILE, state / ISSUER_LMK_FILE)


def load_card(profile_name_or_path: str | os.PathLike, state_dir: str | os.PathLike, hsm, *,
              delay_s: float | None = None):
    """The card of a profile, personalised on first use, after the profile changed, or
    when `hsm` does not hold the issuer master key the saved card came from.

    Its counters live in `<state>/cards/<name>.state.json` and survive restarts; a new
    personalisation starts them again from zero."""
    from .card import EmvCard
    from .perso import Personaliser, issued_under, load_image, state_path
    from .state import CardStateStore

    profile = load_profile(profile_name_or_path)
    store = CardStateStore(state_path(state_dir, profile))
    image = load_image(state_dir, profile)
    if image is None or not issued_under(image, hsm):
        image = Personaliser(state_dir, hsm).personalise(profile)
        store.delete()
    return EmvCard(image, store, delay_s=delay_s)


def open_card(profile_name_or_path: str | os.PathLike, delay_s: float = 0.0, state_dir: str | None = None):
    """`load_card` with the default state directory and the issuer HSM in it: what
    `pos card insert --profile NAME` uses."""
    state = Path(state_dir) if state_dir else default_state_dir()
    hsm = open_issuer_hsm(state)
    try:
        return load_card(profile_name_or_path, state, hsm, delay_s=delay_s or None)
    finally:
        hsm.close()
