"""torchdispatch_returnn: run unmodified PyTorch code once, get an equivalent RETURNN network."""

from .capture import Capture, returnn_capture
from .errors import CaptureError, InputSpecError, ParityError, UnsupportedOpError
from .handlers.registry import register, unregister

__all__ = ["returnn_capture", "Capture", "register", "unregister", "CaptureError", "UnsupportedOpError",
           "ParityError", "InputSpecError"]
__version__ = "0.1.0"
