"""The EMV contactless kernel of the secure world, with its relay ("through-object") defence.

    from terminal.kernel import Kernel, KernelConfig, TransactionRequest
    kernel = Kernel(KernelConfig.default(ca_keys_path=...))
    result = kernel.run(session, TransactionRequest(amount=12_345))

PBOC (qPBOC, SM2 fDDA) and international (qVSDC-style, RSA fDDA) cards. docs/kernel.md
describes the flow, the configuration, the relay thresholds and what is not done.
"""
from .config import AidConfig, CAPublicKey, ConfigError, KernelConfig, TerminalConfig
from .kernel import Kernel
from .relay import ApduTiming, RelayPolicy, RelayVerdict
from .result import KernelResult, Outcome, TransactionRequest

__all__ = ["AidConfig", "ApduTiming", "CAPublicKey", "ConfigError", "Kernel", "KernelConfig", "KernelResult",
           "Outcome", "RelayPolicy", "RelayVerdict", "TerminalConfig", "TransactionRequest"]
