"""Fine-tuning MoveNet's own heads (training.losses.movenet_pose_losses, train.freeze_trunk): the targets are in
the units the centre-guided decode reads, so maps made from them decode back to the labels; the losses are zero
there and positive elsewhere; a short run trains only what it should."""
from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

from conftest import make_coco
from posecal.codec.movenet import crop_pixels_to_cells, decode_movenet, movenet_to_crop_pixels
from posecal.errors import PosecalInputError
from posecal.models.backbones.movenet import MoveNetOutput
from posecal.training.config import load_train_config
from posecal.training.losses import centernet_focal, movenet_pose_losses

H = W = 48          # Lightning's stride-4 grid (192 px crops)
K = 17


def perfect_maps(keypoints: torch.Tensor, centre=(24, 24)) -> MoveNetOutput:
    """MoveNet outputs that say exactly `keypoints` (N, K, 2 crop pixels): each heatmap peaks at the keypoint's
    cell, the offsets there hold the rest, the centre peaks at `centre` and regresses onto each keypoint."""
    n = keypoints.shape[0]
    cells = crop_pixels_to_cells(keypoints, H, W)
    heat = torch.full((n, K, H, W), -8.0)
    offset = torch.zeros(n, 2 * K, H, W)
    regress = torch.zeros(n, 2 * K, H, W)
    center = torch.full((n, 1, H, W), -8.0)
    for i in range(n):
        center[i, 0, centre[0], centre[1]] = 8.0
        for k in range(K):
            cx, cy = (int(round(v)) for v in cells[i, k].tolist())
            heat[i, k, cy, cx] = 8.0
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    if 0 <= cy + dy < H and 0 <= cx + dx < W:
                        offset[i, 2 * k, cy + dy, cx + dx] = cells[i, k, 1] - (cy + dy)
                        offset[i, 2 * k + 1, cy + dy, cx + dx] = cells[i, k, 0] - (cx + dx)
            regress[i, 2 * k, centre[0], centre[1]] = cells[i, k, 1] - centre[0]
            regress[i, 2 * k + 1, centre[0], centre[1]] = cells[i, k, 0] - centre[1]
    return MoveNetOutput(feature=torch.zeros(n, 24, H, W), center=torch.sigmoid(center), regress=regress,
                         heatmap=torch.sigmoid(heat), offset=offset, center_logits=center, heatmap_logits=heat)


def random_keypoints(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 8 + torch.rand(n, K, 2, generator=gen) * (4 * W - 16)


def test_cells_invert_the_decode_pixel_map():
    xy = random_keypoints(3)
    for size in (48, 64):
        cells = crop_pixels_to_cells(xy, size, size)
        # decode_movenet: pixel = cell * float16(1/size) * 4 size, then the pixel shift
        from posecal.codec.movenet import coordinate_scale
        back = movenet_to_crop_pixels(cells * coordinate_scale(size) * 4 * size)
        assert torch.allclose(back, xy, atol=1e-4)
    # Thunder's scale is exact: cell 10 is pixel 4 * 10 - 0.5
    assert crop_pixels_to_cells(torch.tensor([[39.5, 79.5]]), 64, 64).tolist() == [[10.0, 20.0]]


def test_maps_made_from_the_targets_decode_back_to_the_labels():
    xy = random_keypoints(2, seed=1)
    out = perfect_maps(xy)
    decoded = decode_movenet(out.center, out.regress, out.heatmap, out.offset)
    assert torch.allclose(movenet_to_crop_pixels(decoded.xy), xy, atol=1e-3)


def test_losses_vanish_on_perfect_maps_and_grow_off_them():
    xy = random_keypoints(2, seed=2)
    kp = torch.cat([xy, torch.full((2, K, 1), 2.0)], -1)
    weight = torch.ones(2, K)
    terms = movenet_pose_losses(perfect_maps(xy), kp, weight)
    assert terms["offset"].item() == pytest.approx(0, abs=1e-5)
    assert terms["regress"].item() == pytest.approx(0, abs=1e-5)
    shifted = kp.clone()
    shifted[..., 0] += 2.0                                    # every label 2 px (half a cell) to the right
    moved = movenet_pose_losses(perfect_maps(xy), shifted, weight)
    # |dx| = 0.5 cell for every keypoint (Lightning's float16 scale makes a cell 3.999 px, hence rel=1e-3)
    assert moved["regress"].item() == pytest.approx(0.5, rel=1e-3)
    # an unlabelled keypoint counts in none of the terms
    weight[:, 0] = 0
    far = kp.clone()
    far[:, 0, :2] = 1.0
    assert movenet_pose_losses(perfect_maps(xy), far, weight)["regress"].item() == pytest.approx(0, abs=1e-5)


def test_focal_loss_by_hand():
    # one 1x2 map: cell 0 is the keypoint's (target 1), cell 1 has target 0.5; logits 0 -> p = 0.5 everywhere
    logits = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 0.5]]]])
    positive = torch.tensor([[[[True, False]]]])
    loss = centernet_focal(logits, target, positive, torch.ones(1, 1))
    want = 0.25 * math.log(2) + (0.5 ** 4) * 0.25 * math.log(2)
    assert loss.item() == pytest.approx(want, rel=1e-5)


def test_freeze_trunk_fine_tunes_movenets_heads_only(tmp_path):
    from posecal.training.train import train
    from posecal.models.checkpoint import load_model, model_from_config
    from posecal.models.config import ModelConfig, network_input

    ann, img_dir = make_coco(tmp_path, n_images=3)
    cfg_file = tmp_path / "finetune.yaml"
    body = {
        "out_dir": str(tmp_path / "run"), "strategy": "s1", "freeze_trunk": True, "epochs": 2, "batch_size": 2,
        "max_steps": 2, "warmup_steps": 1, "num_workers": 0, "threads": 1, "lr": 0.01, "lambda_heatmap": 1.0,
        "data": {"train_annotations": str(ann), "train_images": str(img_dir), "val_annotations": str(ann),
                 "val_images": str(img_dir)},
        "model": {"backbone": "movenet_lightning", "quality_heads": True, "head_hidden": 16}}
    cfg_file.write_text(json.dumps(body))
    result = train(load_train_config(cfg_file), progress=False)
    assert result["step"] == 2
    tuned, _, _ = load_model(tmp_path / "run" / "best_model.pt")
    shipped = model_from_config(network_input(ModelConfig(backbone="movenet_lightning", quality_heads=True,
                                                          head_hidden=16), given={"backbone", "quality_heads",
                                                                                  "head_hidden"}))
    a, b = tuned.backbone.state_dict(), shipped.backbone.state_dict()
    changed = {k.split(".")[0] for k in a if a[k].dtype.is_floating_point and not torch.allclose(a[k], b[k], atol=1e-2)}
    assert changed and changed <= {"fpn", "heatmap_head", "offset_head", "regress_head"}, changed

    cfg_file.write_text(json.dumps({**body, "strategy": "s3"}))
    with pytest.raises(PosecalInputError, match="freeze_trunk"):
        train(load_train_config(cfg_file), progress=False)


def test_regress_weight_scales_the_regression_term_only():
    kp = random_keypoints(2, seed=3)
    out = perfect_maps(kp)
    off = MoveNetOutput(**{**vars(out), "regress": out.regress + 0.7})    # regression off by 0.7 cells each way
    w = torch.ones(2, 17)
    full = movenet_pose_losses(off, kp, w)
    none = movenet_pose_losses(off, kp, w, regress_weight=0.0)
    tenth = movenet_pose_losses(off, kp, w, regress_weight=0.1)
    assert full["regress"].item() == pytest.approx(1.4, abs=1e-4)           # |0.7| + |0.7| per keypoint
    assert none["pose"].item() == pytest.approx((full["heatmap"] + full["offset"]).item(), abs=1e-6)
    assert tenth["pose"].item() == pytest.approx(none["pose"].item() + 0.14, abs=1e-5)


def test_layer_wise_unfreezing_regression_off_and_weight_average(tmp_path):
    """freeze_trunk with unfreeze_trunk_at 1: the trunk trains from step 1 on; lambda_regress 0 leaves the
    regression head as published; ema_decay: best_model.pt is the averaged weights, not the last step's."""
    from posecal.training.train import train
    from posecal.models.checkpoint import load_model, model_from_config
    from posecal.models.config import ModelConfig, network_input

    ann, img_dir = make_coco(tmp_path, n_images=3)
    cfg_file = tmp_path / "finetune.yaml"
    body = {
        "out_dir": str(tmp_path / "run"), "strategy": "s1", "freeze_trunk": True, "unfreeze_trunk_at": 1,
        "lambda_regress": 0.0, "ema_decay": 0.5, "epochs": 1, "batch_size": 1, "max_steps": 2,
        "warmup_steps": 1, "num_workers": 0, "threads": 1, "lr": 0.01, "lambda_heatmap": 1.0,
        "data": {"train_annotations": str(ann), "train_images": str(img_dir), "val_annotations": str(ann),
                 "val_images": str(img_dir)},
        "model": {"backbone": "movenet_lightning", "quality_heads": True, "head_hidden": 16}}
    cfg_file.write_text(json.dumps(body))
    assert train(load_train_config(cfg_file), progress=False)["step"] == 2
    shipped = model_from_config(network_input(ModelConfig(backbone="movenet_lightning", quality_heads=True,
                                                          head_hidden=16), given={"backbone", "quality_heads",
                                                                                  "head_hidden"}))
    last = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=False)
    live = last["model"]
    b = shipped.state_dict()

    def changed(state, prefix):
        return [k for k in state if k.startswith(prefix) and state[k].dtype.is_floating_point
                and not torch.allclose(state[k].float(), b[k], atol=1e-4)]

    assert changed(live, "backbone.backbone.")                      # the trunk trained (from step 1)
    assert not changed(live, "backbone.regress_head.")              # no regression loss: as published
    best, _, _ = load_model(tmp_path / "run" / "best_model.pt")
    averaged = {k[len("module."):]: v for k, v in last["ema"].items() if k.startswith("module.")}
    tuned = best.state_dict()
    floats = [k for k in tuned if tuned[k].dtype.is_floating_point]
    assert all(torch.allclose(tuned[k], averaged[k].float(), atol=1e-6) for k in floats)
    assert any(not torch.allclose(tuned[k], live[k].float(), atol=1e-6) for k in changed(live, "backbone.fpn"))

    cfg_file.write_text(json.dumps({**body, "freeze_trunk": False}))
    with pytest.raises(PosecalInputError, match="unfreeze_trunk_at"):
        train(load_train_config(cfg_file), progress=False)


@pytest.mark.slow   # MoveNet Thunder trained on the CPU
@pytest.mark.parametrize("name", ["movenet_thunder_gpu.yaml", "movenet_thunder_gpu_hard.yaml"])
def test_the_gpu_fine_tune_config_runs_a_few_steps_on_cpu_and_resumes_at_its_step(tmp_path, name):
    """configs/movenet_thunder_gpu.yaml as written (recipe: lambda_regress, layer-wise unfreezing, EMA), with only
    the machine's fields and the data made small: 2 steps, then --resume goes on at step 2 to step 3. The hard
    people's config (issue 62) the same way: from accurate's weights, people pasted in front, negatives."""
    from dataclasses import replace
    from pathlib import Path

    from posecal.training.config import DataConfig
    from posecal.training.train import train

    cfg = load_train_config(Path(__file__).resolve().parents[2] / "configs" / name)
    assert (cfg.model.backbone, cfg.freeze_trunk, cfg.lambda_regress) == ("movenet_thunder", True, 0.1)
    assert cfg.unfreeze_trunk_at and cfg.ema_decay and cfg.device == "cuda"
    ann, img_dir = make_coco(tmp_path, n_images=4)
    small = replace(cfg, out_dir=str(tmp_path / "run"), resume_state=str(tmp_path / "state"),
                    data=DataConfig(train_annotations=str(ann), train_images=str(img_dir),
                                    val_annotations=str(ann), val_images=str(img_dir)),
                    device="cpu", amp=False, batch_size=1, max_steps=2, unfreeze_trunk_at=1, num_workers=0,
                    threads=1, val_flip=False, max_minutes=None, epochs=3)
    assert train(small, progress=False)["step"] == 2
    resumed = train(replace(small, max_steps=3), resume=True, progress=False)
    assert resumed["step"] == 3
    last = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=False)
    assert last["state"]["step"] == 3 and "ema" in last
