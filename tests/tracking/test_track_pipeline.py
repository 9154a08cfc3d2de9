"""The video loop's overlapped stages (posecal/tracking/stages.py, tracking/job.one_ahead) and the batched pose
call they feed: order kept, errors surfaced where they arose, memory bounded, and batched crops equal to one
crop at a time."""
import threading
import time

import numpy as np
import pytest

from posecal.inference.predictor import Predictor
from posecal.tracking.job import one_ahead
from posecal.tracking.stages import InOrder, Prefetch, StageClock

from conftest import write_tiny_model


def test_prefetch_keeps_order_and_raises_the_producers_error_where_it_arose():
    def items():
        yield from range(5)
        raise ValueError("frame 5 is broken")

    seen = []
    with pytest.raises(ValueError, match="frame 5"):
        for x in Prefetch(items(), depth=2):
            seen.append(x)
    assert seen == [0, 1, 2, 3, 4]


def test_prefetch_stays_bounded_and_stops_when_left_early():
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    it = Prefetch(items(), depth=3)
    for x in it:
        if x == 1:
            break
    time.sleep(0.2)
    assert len(produced) <= 1 + 1 + 3 + 1   # taken, in flight, queued, blocked on put
    assert not it._thread.is_alive()


def test_one_ahead_starts_the_next_item_before_the_current_one_is_handed_out():
    started = []
    pairs = []
    for item, token in one_ahead([1, 2, 3], lambda x: started.append(x) or f"t{x}"):
        pairs.append((item, token, list(started)))
    assert pairs == [(1, "t1", [1, 2]), (2, "t2", [1, 2, 3]), (3, "t3", [1, 2, 3])]
    assert list(one_ahead([], lambda x: x)) == []


def test_in_order_runs_calls_in_submission_order_with_a_bounded_backlog():
    done, running = [], threading.Event()

    def slow(i):
        running.set()
        time.sleep(0.01 * (5 - i))    # earlier calls are slower: order must still hold
        done.append(i)

    worker = InOrder(backlog=2)
    for i in range(5):
        worker.submit(slow, i)
        assert len(worker._pending) <= 2
    worker.finish()
    assert done == [0, 1, 2, 3, 4]

    failing = InOrder()
    failing.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.finish()


def test_stage_clock_adds_busy_time_per_stage_across_threads():
    clock = StageClock()
    timed = clock.timed("sleep", time.sleep)
    threads = [threading.Thread(target=timed, args=(0.05,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with clock("other"):
        pass
    assert 0.15 <= clock.seconds["sleep"] < 2.0 and set(clock.seconds) == {"sleep", "other"}   # 3 x 50 ms, summed


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    return write_tiny_model(path)


def test_batched_and_per_crop_network_calls_give_the_same_poses(tiny_model):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 60, 120], [100, 40, 50, 100], [200, 20, 80, 160], [40, 100, 30, 60]], float)
    scores = np.ones(len(boxes))
    batched = Predictor(tiny_model, flip=False, detector=None, batch_size=16, threads=1)
    single = Predictor(tiny_model, flip=False, detector=None, batch_size=1, threads=1)
    a = batched.predict_many([(frame, boxes, scores)], bgr=True)[0]
    b = single.predict_many([(frame, boxes, scores)], bgr=True)[0]
    assert len(a) == len(b) == 4
    for p, q in zip(a, b):
        np.testing.assert_allclose(p.keypoints, q.keypoints, atol=1e-3)
        np.testing.assert_allclose(p.keypoint_quality, q.keypoint_quality, atol=1e-5)
        assert p.pose_quality == pytest.approx(q.pose_quality, abs=1e-5)
        np.testing.assert_array_equal(p.box, q.box)
