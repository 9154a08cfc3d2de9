"""Print pip constraints pinning every dependency posecal declares to its floor (`name>=X` -> `name==X`), so CI
installs the lowest versions pyproject.toml claims to work with: the runtime dependencies, and with --extra NAME
(repeatable) also that extra's."""
import argparse
import re
import sys
import tomllib
from pathlib import Path

FLOOR = re.compile(r"^([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][^,;\s]*)")


def declared(project: dict, extras: list[str]) -> list[str]:
    """The runtime dependencies' specs, then each named extra's."""
    return list(project["dependencies"]) + [spec for extra in extras for spec in project["optional-dependencies"][extra]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", action="append", default=[])
    parser.add_argument("--pyproject", default=Path(__file__).resolve().parents[1] / "pyproject.toml")
    args = parser.parse_args()
    project = tomllib.loads(Path(args.pyproject).read_text())["project"]
    pins = [f"{m.group(1)}=={m.group(2)}" for m in map(FLOOR.match, declared(project, args.extra)) if m]
    sys.stdout.write("".join(f"{pin}\n" for pin in pins))


if __name__ == "__main__":
    main()
