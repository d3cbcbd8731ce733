"""A provider route's credentials, as the host holds them: where, who we are, which keys.

A provider is one way to reach a wallet (directly, or through a service provider); the
host signs with its own key for that provider and checks answers against the wallet's
platform key. `serve_wallets` makes a matching set for demos and tests and can write it
to a JSON file; that file holds private keys in clear, so it is for demo state only and
written 0600. In production the SM2 keys live in the HSM (`signing.HSMSigner`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .codes import Wallet
from .signing import SM2, Signer, Verifier, signer_from_pem, verifier_from_pem


@dataclass
class ProviderConfig:
    name: str  # route name: "alipay-direct", "wechat-isv", ...
    wallet: Wallet
    base_url: str
    merchant: str  # our id at the wallet: app_id, mchid or merId
    signer: Signer  # our private key for this provider
    key_serial: str  # the serial / certId the wallet knows our key by
    platform: Verifier  # the wallet's public key
    platform_serial: str = ""
    apiv3_key: bytes = b""  # WeChat style: decrypts notify resources
    timeout: float = 10.0  # seconds per HTTP call before the outcome is "unknown"

    @property
    def sign_type(self) -> str:
        return self.signer.algorithm

    def to_json(self) -> dict:
        return {"name": self.name, "wallet": self.wallet.value, "base_url": self.base_url,
                "merchant": self.merchant, "sign_type": self.sign_type, "private_key": self.signer.private_pem(),
                "key_serial": self.key_serial, "platform_key": self.platform.to_pem(),
                "platform_serial": self.platform_serial, "apiv3_key": self.apiv3_key.hex(), "timeout": self.timeout}

    @classmethod
    def from_json(cls, data: dict) -> "ProviderConfig":
        sign_type = data.get("sign_type", SM2)
        return cls(data["name"], Wallet(data["wallet"]), data["base_url"], data["merchant"],
                   signer_from_pem(sign_type, data["private_key"]), data["key_serial"],
                   verifier_from_pem(sign_type, data["platform_key"]), data.get("platform_serial", ""),
                   bytes.fromhex(data.get("apiv3_key", "")), float(data.get("timeout", 10.0)))

    def __repr__(self) -> str:
        return f"ProviderConfig({self.name} {self.wallet.value} {self.base_url} merchant={self.merchant})"


def save_providers(path: str | os.PathLike, providers: list[ProviderConfig], app_urls: dict[Wallet, str]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"providers": [p.to_json() for p in providers], "apps": {w.value: u for w, u in app_urls.items()}}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=1)


def load_providers(path: str | os.PathLike) -> tuple[list[ProviderConfig], dict[Wallet, str]]:
    data = json.loads(Path(path).read_text())
    return ([ProviderConfig.from_json(p) for p in data["providers"]],
            {Wallet(w): u for w, u in data.get("apps", {}).items()})
