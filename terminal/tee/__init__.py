"""The TEE: the secure world as its own OS process, behind a GlobalPlatform-style
client API (open a session, invoke typed commands, close). See docs/tee.md.

Importing this package starts nothing; `TeeSupervisor` spawns the process.
"""
from .api import (Command, Credentials, ErrorCode, LoginMethod, SIGNATURES, TeeError, TeeState)
from .client import TeeClient
from .supervisor import TeeSupervisor

__all__ = ["Command", "Credentials", "ErrorCode", "LoginMethod", "SIGNATURES", "TeeClient", "TeeError", "TeeState",
           "TeeSupervisor"]
