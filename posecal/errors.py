"""User-facing errors: one clear line naming the file and the problem, never a traceback."""
import importlib


class PosecalInputError(Exception):
    """Bad user input (missing file, malformed JSON, invalid box...). The CLI prints it as one line."""


def require(module: str):
    """Import an optional dependency (the `onnx` extra), or say in one line how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise PosecalInputError(f"this needs the optional package '{module}': pip install 'posecal[onnx]'") from None
