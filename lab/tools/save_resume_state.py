"""Write the committable compact state (fp16 weights + schedule position) of a training's last.pt.

Training writes it itself each epoch when the config names `resume_state`; this converts a last.pt written
without it (e.g. by a run started before the option existed).
Usage: python lab/tools/save_resume_state.py CONFIG.yaml   (reads OUT_DIR/last.pt, writes the config's resume_state)
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from posecal.models.checkpoint import model_from_config, save_resume_state
from posecal.training.config import load_train_config


def main(config_path: str) -> None:
    cfg = load_train_config(config_path)
    if not cfg.resume_state:
        sys.exit(f"{config_path}: names no resume_state folder")
    ckpt = torch.load(Path(cfg.out_dir) / "last.pt", map_location="cpu", weights_only=False)
    model = model_from_config(cfg.model, imagenet=False)
    model.load_state_dict(ckpt["model"])
    save_resume_state(model, cfg.model, ckpt["state"], cfg.resume_state)
    print(f"wrote {cfg.resume_state} (epoch {ckpt['state']['epoch']}, step {ckpt['state']['step']})")


if __name__ == "__main__":
    main(sys.argv[1])
