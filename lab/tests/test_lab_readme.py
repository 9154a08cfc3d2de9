"""lab/README.md names every script of the lab, so that what is here and why can be read in one place."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_lab_script_has_its_line():
    readme = (REPO / "lab" / "README.md").read_text()
    scripts = [p for folder in ("bench", "tools") for p in (REPO / "lab" / folder).iterdir() if p.is_file()]
    missing = [p.name for p in scripts if f"`{p.name}`" not in readme]
    assert scripts and not missing, f"lab/README.md says nothing of {missing}"
