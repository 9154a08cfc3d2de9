"""eval's and audit's posing (posecal/inference/record_posing.py): one config, one estimator, in this process or on
Ray. Here, without Ray: the estimator takes the opened model's device and the config's settings, and
pose_records in this process gives what the estimator gives."""
import numpy as np
import pytest

from posecal.inference.opener import OpenedModel, open_model
from posecal.inference.record_posing import RecordPosing, pose_records, record_estimator


def test_the_estimator_runs_where_the_model_was_opened_with_the_configs_settings():
    torch = pytest.importorskip("torch")
    from posecal.models.config import ModelConfig

    net = torch.nn.Conv2d(3, 17, 1)   # never run: only where its inputs would go is read
    opened = OpenedModel(net, ModelConfig(input_wh=(192, 256)), {}, False, "torch", "cuda:1")
    posing = RecordPosing(model="x.pt", backend="torch", flip=False, threads=3, calibrated=False, decode="argmax",
                          orientations=4, batch_size=5, device="cuda:1")
    est = record_estimator(posing, opened)
    assert est.runner.device == "cuda:1" and est.runner.threads == 3   # a torch model's inputs go to its device
    assert (est.batch_size, est.orientations, est.decode_method, est.flip, est.calibration) == (5, 4, "argmax",
                                                                                                 False, None)


def test_pose_records_in_this_process_is_the_estimators_answer(real_person):
    from posecal.data.coco import PersonRecord

    path, box, _ = real_person
    records = [PersonRecord(path, 1, box, np.zeros((17, 3)), 0.0), PersonRecord(path, 2, box * [1, 1, .7, .7],
                                                                                np.zeros((17, 3)), 0.0)]
    posing = RecordPosing(model="fast", threads=1)
    opened = open_model("fast", "onnx", True, 1)
    got = pose_records(records, posing, opened, None, "unused.json", progress=False)
    want = record_estimator(posing, opened).estimate_records(records)
    assert got.calibrated and len(got.records) == 2
    np.testing.assert_array_equal(got.keypoints, want.keypoints)
    np.testing.assert_array_equal(got.oks, want.oks)
