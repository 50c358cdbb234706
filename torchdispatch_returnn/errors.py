"""The errors of the public API; all derive from :class:`CaptureError`."""


class CaptureError(Exception):
    """Base class of every error raised by a capture."""


class UnsupportedOpError(CaptureError, NotImplementedError):
    """An op or module without a handler; the message names the torch function, module path and source line."""


class ParityError(CaptureError, AssertionError):
    """RETURNN and PyTorch disagree beyond tolerance."""


class InputSpecError(CaptureError, ValueError):
    """Bad ``dynamic_shapes`` or unusable inputs."""
