"""Draw docs/architecture.png: posecal's stages in data-flow order, as layered in pyproject.toml's contract.

    python tools/draw_architecture.py [--out docs/architecture.png]

The stages and their layers are read from the import-linter contract in pyproject.toml, so the picture cannot
drift from what CI checks; the one-line summaries come from each package's docstring's first clause.
"""
from __future__ import annotations

import argparse
import ast
import tomllib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# one image's path through `posecal predict` (stage, what it does there), left to right
FLOW = (("data", "image or\nvideo frame"), ("detect", "person\nboxes"), ("data", "affine crop\n(network size)"),
        ("models", "backbone →\nheatmaps, F"), ("models", "quality heads\nOKS/OPKS/vis."),
        ("codec", "decode\n(DARK, flip)"), ("calibration", "calibrated\nquality, radii"),
        ("inference", "PersonPose\nper person"), ("predict", "results JSON,\noverlays"))
COLOURS = {"cli": "#d9d9d9", "tracking": "#cfe2f3", "predict": "#cfe2f3", "audit": "#d9ead3", "viz": "#fce5cd",
           "evaluation": "#d9ead3", "training": "#d9ead3", "inference": "#cfe2f3", "export": "#ead1dc",
           "models": "#fff2cc", "detect": "#fff2cc", "calibration": "#fff2cc", "data": "#e6e0f8",
           "codec": "#eeeeee", "metrics": "#eeeeee"}


def layers() -> list[list[str]]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(c for c in cfg["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    return [[m.strip().removeprefix("posecal.") for m in layer.split("|")] for layer in contract["layers"]]


def summary(stage: str) -> str:
    init = ROOT / "posecal" / stage / "__init__.py"
    if not init.is_file():
        return "shared by every layer"
    doc = (ast.get_docstring(ast.parse(init.read_text())) or "").split("\n\n")[0].replace("\n", " ")
    head, _, rest = doc.partition(": ")
    return (rest or head).strip().rstrip(".").replace("`", "")


def draw(out: Path) -> None:
    rows = layers()
    n = len(rows)
    fig, ax = plt.subplots(figsize=(14, 0.62 * n + 3.2), dpi=110)
    top = n + 2.3
    ax.set_xlim(0, 14)
    ax.set_ylim(-0.7, top + 0.3)
    ax.axis("off")
    # the data-flow strip
    ax.text(0.1, top - 0.05, "One image through posecal predict", fontsize=10, fontweight="bold", va="center")
    step = 13.6 / len(FLOW)
    for i, (stage, what) in enumerate(FLOW):
        x0 = 0.2 + i * step
        ax.add_patch(FancyBboxPatch((x0, top - 1.45), step - 0.35, 1.0, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    fc=COLOURS.get(stage, "#f4f4f4"), ec="#555555", lw=0.8))
        ax.text(x0 + (step - 0.35) / 2, top - 0.72, what, fontsize=7.8, ha="center", va="center")
        ax.text(x0 + (step - 0.35) / 2, top - 1.3, f"{stage}/", fontsize=7.5, ha="center", va="center",
                family="monospace", color="#444444")
        if i:
            ax.add_patch(FancyArrowPatch((x0 - 0.33, top - 0.95), (x0 - 0.02, top - 0.95), arrowstyle="-|>",
                                         mutation_scale=10, color="#1f4e79", lw=1.2))
    # the layers
    ax.text(0.1, n + 0.25, "Layers: a stage imports only from the layers below it (checked by lint-imports)",
            fontsize=10, fontweight="bold", va="center")
    for r, row in enumerate(rows):
        y = n - 1 - r
        width = 12.6 / len(row)
        for i, stage in enumerate(row):
            x0 = 1.2 + i * width
            ax.add_patch(FancyBboxPatch((x0 + 0.04, y + 0.06), width - 0.08, 0.74,
                                        boxstyle="round,pad=0.02,rounding_size=0.08",
                                        fc=COLOURS.get(stage, "#f4f4f4"), ec="#555555", lw=0.8))
            shared = not (ROOT / "posecal" / stage).is_dir()
            ax.text(x0 + 0.14, y + 0.6, f"posecal.{stage}" if shared else f"posecal/{stage}/", fontsize=9,
                    fontweight="bold", va="center", family="monospace")
            text = "shared by every layer" if shared else summary(stage)
            limit = int(width * 15.5)
            if len(text) > limit:
                cut = text[:limit].rsplit(" ", 1)[0]
                rest = text[len(cut):].strip()
                text = cut + "\n" + (rest if len(rest) <= limit else rest[: limit - 1].rsplit(" ", 1)[0] + " …")
            ax.text(x0 + 0.14, y + 0.3, text, fontsize=6.8, va="center", color="#333333", linespacing=1.1)
        ax.text(0.1, y + 0.43, f"layer {n - r}", fontsize=8, va="center", color="#777777")
    ax.text(7, -0.45, "Stages side by side on one layer are independent: neither imports the other. "
            "No module imports a sibling that imports it back (acyclic_siblings).", ha="center", fontsize=8.5,
            color="#333333")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "architecture.png")
    draw(ap.parse_args().out)
