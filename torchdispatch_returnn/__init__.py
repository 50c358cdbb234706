"""torchdispatch_returnn: run unmodified PyTorch code once, get an equivalent RETURNN network."""

from .capture import Capture, returnn_capture
from .checkpoint import convert_checkpoint
from .embed import as_returnn_layer_dict
from .errors import CaptureError, HandlerError, InputSpecError, LayerBuildError, ParityError, UnsupportedOpError
from .handlers.registry import register, unregister
from .runtime import ConfigNetwork

__all__ = ["returnn_capture", "Capture", "ConfigNetwork", "convert_checkpoint", "as_returnn_layer_dict", "register",
           "unregister", "CaptureError", "UnsupportedOpError", "ParityError", "InputSpecError", "LayerBuildError",
           "HandlerError"]
__version__ = "0.2.0"
