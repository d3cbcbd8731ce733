"""The wire contract between terminal and host: the one module both sides import."""
from .codes import MTI, EntryMode, NetworkCode, PinFormat, PROCESSING_CODES, ResponseCode, TxnType
from .frame import MAX_FRAME, Frame, FrameError, Processing, read_frame, read_frame_blocking
from .message import (Field60, Message, Original, PrivateTag, ProtocolError, decode, describe, encode, mac_input,
                      private_fields, read_private)

__all__ = [
    "MTI", "EntryMode", "NetworkCode", "PinFormat", "PROCESSING_CODES", "ResponseCode", "TxnType",
    "MAX_FRAME", "Frame", "FrameError", "Processing", "read_frame", "read_frame_blocking",
    "Field60", "Message", "Original", "PrivateTag", "ProtocolError", "decode", "describe", "encode",
    "mac_input", "private_fields", "read_private",
]
