"""User-facing errors: one clear line naming the file and the problem, never a traceback."""
import importlib


class PosecalInputError(Exception):
    """Bad user input (missing file, malformed JSON, invalid box...). The CLI prints it as one line; `details`
    (e.g. each bad entry of a file refused as a whole) are printed as lines of their own before it."""

    def __init__(self, message: str = "", details: list[str] | None = None):
        super().__init__(message)
        self.details = list(details or [])


def require(module: str, extra: str = "train", what: str = "this"):
    """Import an optional dependency (of the `extra` extra), or say in one line how to get it and `what` (the
    command or option) needs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise PosecalInputError(f"{what} needs the optional package '{module}': pip install 'posecal[{extra}]'") from None
