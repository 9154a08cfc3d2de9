"""User-facing errors: one clear line naming the file and the problem, never a traceback."""
import importlib


class PosecalInputError(Exception):
    """Bad user input (missing file, malformed JSON, invalid box...). The CLI prints it as one line; `details`
    (e.g. each bad entry of a file refused as a whole) are printed as lines of their own before it."""

    def __init__(self, message: str = "", details: list[str] | None = None):
        super().__init__(message)
        self.details = list(details or [])


class MissingPackage(PosecalInputError):
    """What a command needs is not installed: one line saying what needs it, what it needs and the command that
    installs it. `option`: the option that needs it (--images), if not the whole command; the CLI names the command
    it runs in front (cli.main, with named()), a Python call reads the option alone, or "this call"."""

    def __init__(self, needs: str, install: str, option: str = "", command: str = ""):
        self.needs, self.install, self.option, self.command = needs, install, option, command
        what = " ".join(w for w in (command, option) if w) or "this call"
        super().__init__(f"{what} needs {needs}: {install}")

    def named(self, command: str) -> "MissingPackage":
        """The same line with the command that needed it in front (posecal calibrate fit --images needs ...)."""
        return MissingPackage(self.needs, self.install, self.option, command)


def require(module: str, extra: str | None = "train", option: str = ""):
    """Import an optional dependency (of the `extra` extra; None: one of posecal's own), or raise MissingPackage:
    one line with the install that brings it (the CLI names the command that needed it; `option`, the option)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        if extra is None:
            raise MissingPackage(f"the package '{package}' (a dependency of posecal)", f"pip install {package}",
                                 option) from None
        raise MissingPackage(f"the optional package '{module}'", f"pip install 'posecal[{extra}]'", option) from None
