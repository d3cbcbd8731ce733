"""Print the merchant's static aggregated code: ask the host for its URL, render it.

The code is the acquirer's page, not a wallet's (docs/wallets.md, "Static code"): any
wallet scans it and the customer types the amount. The terminal only prints it, as a
PNG for the label printer (error correction Q: a sticker at a counter gets scratched);
`pos static-qr --text` draws it on screen with the UI's half-block renderer.
"""
from __future__ import annotations

import os
from pathlib import Path

import qrcode

from .online import OnlineSession


def _qr(url: str) -> qrcode.QRCode:
    qr = qrcode.QRCode(border=4, box_size=10, error_correction=qrcode.constants.ERROR_CORRECT_Q)
    qr.add_data(url)
    qr.make(fit=True)
    return qr


def render_png(url: str, path: str | os.PathLike) -> Path:
    _qr(url).make_image().save(str(path))
    return Path(path)


def fetch_static_qr(session: OnlineSession, png: str | os.PathLike | None = None) -> str:
    """The static code's URL from the host, written to `png` when given."""
    url = session.static_qr()
    if png is not None:
        render_png(url, png)
    return url
