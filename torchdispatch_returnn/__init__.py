"""torchdispatch_returnn: run unmodified PyTorch code once, get an equivalent RETURNN network."""

from .capture import Capture, returnn_capture
from .errors import CaptureError, HandlerError, InputSpecError, LayerBuildError, ParityError, UnsupportedOpError
from .handlers.registry import register, unregister
from .runtime import ConfigNetwork

__all__ = ["returnn_capture", "Capture", "ConfigNetwork", "register", "unregister", "CaptureError",
           "UnsupportedOpError", "ParityError", "InputSpecError", "LayerBuildError", "HandlerError"]
__version__ = "0.2.0"
