"""What a Picture gives beside its people: the milliseconds its stages took (`speed`), a pandas table
(`to_df`); and the runs' terminal: `predict --max-frames`, progress bars with their totals, drawn only on a
terminal."""
import io
import json
import sys

import cv2
import numpy as np
import pytest

from posecal import PoseTracker, Predictor
from posecal.data.sources import collect, frames_to_read
from posecal.errors import MissingPackage
from posecal.io import progress_shown
from posecal.skeleton import COCO_KEYPOINTS

from conftest import make_coco, run_cli, write_walking_video


@pytest.fixture(scope="module")
def predictor(tiny_model):
    return Predictor(tiny_model, detector=None, min_pose_quality=0, threads=1)


def test_every_picture_says_what_its_stages_took(predictor, tiny_model, tmp_path):
    image = np.full((120, 90, 3), 90, np.uint8)
    one = predictor(image)
    assert set(one.speed) == {"detect", "pose"} and all(v >= 0 for v in one.speed.values())
    assert one.speed["pose"] > 0
    many = predictor.predict([image, image])
    assert all(set(p.speed) == {"detect", "pose"} and p.speed["pose"] > 0 for p in many)
    tracked = list(PoseTracker(model=str(tiny_model), detector="none", threads=1, min_pose_quality=0).track(
        write_walking_video(tmp_path / "walk.avi", frames=3)))
    assert len(tracked) == 3 and all(set(p.speed) == {"detect", "pose"} for p in tracked)


def test_a_picture_as_a_table_holds_its_arrays(predictor):
    pd = pytest.importorskip("pandas")
    picture = predictor(np.full((120, 90, 3), 90, np.uint8))
    df = picture.to_df()
    assert isinstance(df, pd.DataFrame) and len(df) == len(picture) == 1
    np.testing.assert_allclose(df["pose_quality"], picture.pose_quality)
    np.testing.assert_allclose(df[["box_x", "box_y", "box_w", "box_h"]].to_numpy(), picture.boxes)
    for k, name in enumerate(COCO_KEYPOINTS):
        np.testing.assert_allclose(df[f"{name}_x"], picture.keypoints[:, k, 0])
        np.testing.assert_allclose(df[f"{name}_quality"], picture.keypoint_quality[:, k])
        assert (df[f"{name}_visibility"].to_numpy() == picture.visibility[:, k]).all()
    assert df["file_name"].tolist() == ["image"] and df["track_id"].tolist() == [None]
    nobody = picture.__class__("empty", "", [], np.zeros((4, 4, 3), np.uint8))
    assert len(nobody.to_df()) == 0


def test_to_df_without_pandas_is_one_line(predictor, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingPackage, match=r"^to_df\(\) needs pandas: pip install pandas$"):
        predictor(np.full((60, 40, 3), 90, np.uint8)).to_df()


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_a_bar_is_drawn_only_when_asked_and_on_a_terminal():
    assert progress_shown(True, _Stream(True))
    assert not progress_shown(True, _Stream(False)) and not progress_shown(False, _Stream(True))
    assert not progress_shown(True, object())   # a stream without isatty: no bar


def test_a_bars_total_counts_images_and_video_frames(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.png"), np.zeros((8, 8, 3), np.uint8))
    write_walking_video(folder / "walk.avi", frames=7)
    files, _ = collect([str(folder)])
    assert frames_to_read(files) == 2 + 7
    assert frames_to_read(files, every=3) == 2 + 3
    assert frames_to_read(files, limit=4) == 4


def test_predict_max_frames_stops_after_n_frames_and_draws_no_bar_when_redirected(tiny_model, tmp_path, capsys):
    ann, images = make_coco(tmp_path / "d", n_images=3)
    write_walking_video(images / "walk.avi", frames=6)
    out = tmp_path / "p.json"
    rc, stdout, err = run_cli(capsys, "predict", images, "--model", tiny_model, "--detector", "none", "--out", out,
                              "--max-frames", "4", "--threads", "1", "--min-pose-quality", "0")
    assert rc == 0 and "in 4 image(s)/frame(s)" in stdout
    assert len({(e["file_name"], e.get("frame_index")) for e in json.loads(out.read_text())}) == 4
    assert "predicting" not in err and "\r" not in err   # stderr is not a terminal here: no bar
    with pytest.raises(SystemExit):   # argparse's own refusal (a positive count)
        run_cli(capsys, "predict", images, "--model", tiny_model, "--out", out, "--max-frames", "0")
    assert "--max-frames: must be > 0" in capsys.readouterr().err
