"""Live sources and poses streamed as they are made (posecal/data/live.py, posecal/records.py, `posecal track|predict
--out -|X.jsonl`): real MJPEG streams served over HTTP on 127.0.0.1 by tests/mjpeg_server.py (real video frames,
or frames drawn here), a real FIFO, the CLI end to end (in this process, or a subprocess where stdout itself or
Ctrl-C is what is tested). No mocks of OpenCV: every frame goes through OpenCV's FFmpeg backend."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from posecal.cli.main import main
from posecal.data.live import LiveConfig, LiveReader, live_source, redact
from posecal.io import StopRequest

from conftest import SHARED, write_tiny_model, write_walking_video
from mjpeg_server import MjpegServer, drawn_jpegs, video_jpegs

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "docs" / "schemas" / "frame_record.schema.json").read_text())
WALKING = SHARED / "data" / "videos" / "intel_two_persons_walking.mp4"
needs_videos = pytest.mark.skipif(not WALKING.is_file(), reason="../shared videos not available")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.pt")


def track_args(tiny, *args) -> list[str]:
    """`posecal track` with the tiny model, whole frames, every pose tracked (no person rule: the untrained
    model's poses say nobody): fast and independent of a detector."""
    return ["track", *map(str, args), "--model", str(tiny), "--backend", "torch", "--detector", "none",
            "--min-birth-quality", "0", "--min-pose-quality", "0", "--threads", "1"]


def validate(value, schema, where="record"):
    """The part of JSON Schema frame_record.schema.json uses (type, a type or null, required, properties,
    additionalProperties, items, minItems/maxItems, minimum/maximum), checked by hand: jsonschema is not a
    dependency."""
    kinds = {"object": dict, "array": list, "string": str, "number": (int, float), "integer": int}
    kind = schema.get("type")
    if isinstance(kind, list):          # ["number", "null"]: null, or the one other type
        if value is None and "null" in kind:
            return
        (kind,) = [k for k in kind if k != "null"]
    if kind:
        assert isinstance(value, kinds[kind]) and not isinstance(value, bool), f"{where}: not a {kind}: {value!r}"
    if kind == "object":
        missing = set(schema.get("required", [])) - set(value)
        assert not missing, f"{where}: missing {missing}"
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(props), f"{where}: unexpected {set(value) - set(props)}"
        for key, sub in props.items():
            if key in value:
                validate(value[key], sub, f"{where}.{key}")
    if kind == "array":
        assert schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", 10 ** 9), f"{where}: length"
        for i, item in enumerate(value):
            validate(item, schema.get("items", {}), f"{where}[{i}]")
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not one of {schema['enum']}"
    if kind in ("number", "integer"):
        assert schema.get("minimum", -float("inf")) <= value <= schema.get("maximum", float("inf")), where


def records_of(text: str) -> list[dict]:
    lines = text.splitlines()
    records = [json.loads(line) for line in lines]   # every line on stdout is one JSON record
    for r in records:
        validate(r, SCHEMA)
    return records


def test_sources_named_cameras_urls_pipes_and_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert live_source("0").kind == "camera" and live_source("0").name == "camera0"
    assert live_source("rtsp://cam.local/live").kind == "url"
    assert live_source("HTTP://127.0.0.1:8080/stream").kind == "url"
    assert live_source("clip.mp4") is None and live_source("folder") is None
    (tmp_path / "0").write_bytes(b"")
    assert live_source("0") is None                       # an existing file named 0 stays a file
    os.mkfifo(tmp_path / "cam.fifo")
    assert live_source("cam.fifo").kind == "pipe" and live_source("pipe:/tmp/x").name == "/tmp/x"
    assert redact("rtsp://admin:s3cret@10.0.0.2:554/h264") == "rtsp://admin:***@10.0.0.2:554/h264"
    assert live_source("rtsp://admin:s3cret@cam/x").name == "rtsp://admin:***@cam/x"


def test_the_reader_keeps_the_newest_frame_and_counts_what_it_drops():
    with MjpegServer(drawn_jpegs(10), fps=25) as server:
        reader = LiveReader(live_source(server.url), LiveConfig(stall_seconds=2), log=lambda m: None)
        taken = []
        for frame in reader:
            taken.append(frame)
            time.sleep(0.12)                               # a pipeline at ~8 fps against a 25 fps stream
            if len(taken) == 6:
                break
    indices = [f.frame_index for f in taken]
    assert indices == sorted(indices) and indices[-1] - indices[0] > len(indices)   # gaps: frames were dropped
    assert reader.taken == 6 and reader.dropped > 0 and reader.captured == reader.taken + reader.dropped
    times = [f.capture_time for f in taken]
    assert times == sorted(times) and abs(times[-1] - time.time()) < 5   # wall-clock capture times
    assert taken[0].bgr.shape == (240, 320, 3) and taken[0].name == f"{server.url}#{indices[0]}"
    assert f"{reader.taken} processed" in reader.report() and f"{reader.dropped} dropped" in reader.report()


def test_the_reader_without_dropping_hands_on_every_frame_in_order():
    with MjpegServer(drawn_jpegs(12), fps=50, loop=False) as server:
        reader = LiveReader(live_source(server.url), LiveConfig(stall_seconds=2, realtime=False, reconnects=0),
                            log=lambda m: None)
        indices = []
        for frame in reader:
            indices.append(frame.frame_index)
            time.sleep(0.03)
    assert indices == list(range(12)) and reader.dropped == 0


@pytest.mark.slow
@needs_videos
def test_track_mjpeg_stream_to_stdout_end_to_end(tiny, tmp_path):
    """`posecal track http://127.0.0.1:PORT/stream --out - --max-frames 8` as a user runs it: stdout holds
    nothing but the JSON records, at most 8, each with capture time and latency; logs go to stderr."""
    with MjpegServer(video_jpegs(WALKING), fps=25) as server:
        started = time.time()
        run = subprocess.run([sys.executable, "-m", "posecal", *track_args(tiny, server.url, "--out", "-",
                                                                          "--max-frames", 8)],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path,
                             env=os.environ | {"PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr
    records = records_of(run.stdout)
    assert 1 <= len(records) <= 8
    assert [r["frame"] for r in records] == sorted({r["frame"] for r in records})
    for r in records:
        assert r["file_name"] == f"{server.url}#{r['frame']}"
        assert started < r["capture_time"] < time.time() and 0 <= r["latency_ms"] < 30_000
        for person in r["people"]:
            assert isinstance(person["track_id"], int) and person["image_id"] == r["frame"]
            assert person["bbox"][2] <= 480 and person["bbox"][3] <= 270
    assert any(r["people"] for r in records)
    err = run.stderr.strip().splitlines()
    assert any("frame(s) arrived" in line and "processed" in line for line in err)
    assert any("stopped by --max-frames" in line for line in err)
    assert "Traceback" not in run.stderr


@pytest.mark.slow
def test_a_server_that_stops_mid_stream_ends_the_run_with_results_kept(tiny, tmp_path, capsys):
    out = tmp_path / "live.jsonl"
    with MjpegServer(drawn_jpegs(20), fps=25) as server:
        threading.Timer(1.5, server.stop).start()          # the camera goes away for good
        started = time.time()
        assert main(track_args(tiny, server.url, "--out", out, "--reconnect", 2, "--stall", 1)) == 0
    assert time.time() - started < 60          # bounded: 2 refused reconnects, not a hang
    records = records_of(out.read_text())
    assert len(records) >= 3                                # what came before the drop is kept, line by line
    err = capsys.readouterr().err
    tries = [line for line in err.splitlines() if "reconnecting" in line]
    assert len(tries) == 2 and "(1/2)" in tries[0] and "(2/2)" in tries[1]
    assert f"{server.url}: the stream ended; reconnecting (1/2)" in err
    assert "after 2 reconnect attempt(s)" in err and "frame(s) arrived" in err


@pytest.mark.slow
def test_a_stalled_stream_is_reconnected_a_bounded_number_of_times(tiny, tmp_path, capsys):
    out = tmp_path / "stall.jsonl"
    with MjpegServer(drawn_jpegs(10), fps=25, stall_after=0.8) as server:   # silent, connection kept open
        started = time.time()
        assert main(track_args(tiny, server.url, "--out", out, "--reconnect", 1, "--stall", 1)) == 0
        assert server.clients == 2                           # the first connection and one reconnect
    assert time.time() - started < 60
    err = capsys.readouterr().err
    assert err.count("reconnecting") == 1 and "no frame for 1 s; reconnecting (1/1)" in err
    assert "cannot reopen it (after 1 reconnect attempt(s))" in err   # headers, then silence: the open times out
    assert len(records_of(out.read_text())) >= 2


@pytest.mark.slow
def test_duration_bounds_a_live_run(tiny, tmp_path, capsys):
    out = tmp_path / "d.jsonl"
    with MjpegServer(drawn_jpegs(10), fps=25) as server:
        started = time.time()
        assert main(track_args(tiny, server.url, "--out", out, "--duration", 1.5)) == 0
        elapsed = time.time() - started
    assert elapsed < 60          # model loading included (a busy machine); the stream itself never ends
    records = records_of(out.read_text())
    assert records and records[-1]["capture_time"] - records[0]["capture_time"] < 1.6
    assert "stopped by --duration" in capsys.readouterr().err


def test_max_frames_bounds_a_video_file_and_json_output_is_unchanged(tiny, tmp_path, capsys):
    """A file is not real time: every frame is processed, and the .jsonl records' people are exactly the
    entries of the .json output, in order."""
    video = write_walking_video(tmp_path / "walk.mp4")
    as_json, as_jsonl = tmp_path / "t.json", tmp_path / "t.jsonl"
    assert main(track_args(tiny, video, "--out", as_json, "--no-progress")) == 0
    assert main(track_args(tiny, video, "--out", as_jsonl, "--no-progress")) == 0
    whole = json.loads(as_json.read_text())
    records = records_of(as_jsonl.read_text())
    assert [r["frame"] for r in records] == list(range(8)) and whole
    assert [p for r in records for p in r["people"]] == whole
    assert all(r["file_name"] == f"walk.mp4#{r['frame']}" for r in records)
    capsys.readouterr()
    assert main(track_args(tiny, video, "--out", as_json, "--max-frames", 3, "--no-progress")) == 0
    assert {r["image_id"] for r in json.loads(as_json.read_text())} <= {0, 1, 2}
    assert "stopped by --max-frames after 3 frame(s)" in capsys.readouterr().err


def test_a_fifo_is_read_as_a_live_source_and_its_end_is_the_end(tiny, tmp_path, capsys):
    fifo = tmp_path / "cam.fifo"
    os.mkfifo(fifo)
    jpegs = drawn_jpegs(30)

    def camera():   # a producer writing MJPEG (JPEGs back to back) in real time, then closing the pipe
        with open(fifo, "wb") as f:
            for data in jpegs:
                f.write(data)
                f.flush()
                time.sleep(0.04)

    threading.Thread(target=camera, daemon=True).start()
    out = tmp_path / "fifo.jsonl"
    assert main(track_args(tiny, fifo, "--out", out)) == 0
    records = records_of(out.read_text())
    assert len(records) >= 3 and all(r["file_name"].startswith(f"{fifo}#") for r in records)
    err = capsys.readouterr().err
    assert "reconnecting" not in err and "the stream ended" in err


def test_a_source_that_cannot_be_opened_is_one_line(tiny, tmp_path, capsys):
    with MjpegServer(drawn_jpegs(2)) as server:
        missing = server.url.replace("/stream", "/nothing")           # HTTP 404
        assert main(track_args(tiny, missing, "--out", tmp_path / "x.jsonl", "--stall", 2)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"posecal: error: {missing}: cannot open the live source (unreachable, refused, or not a "
                       f"stream OpenCV's FFmpeg backend reads)")
    assert main(track_args(tiny, "9", "--out", tmp_path / "x.jsonl")) == 2
    assert ("posecal: error: camera9: cannot open the live source (no camera with this index, or it is busy)"
            in capsys.readouterr().err)
    assert main(track_args(tiny, "-", "--out", tmp_path / "x.jsonl")) == 2
    assert "posecal: -: posecal track does not read stdin; for a pipe give a FIFO path" in capsys.readouterr().err


@pytest.mark.slow
@needs_videos
def test_ctrl_c_ends_a_live_run_with_the_records_kept(tiny, tmp_path):
    with MjpegServer(video_jpegs(WALKING), fps=25) as server:
        proc = subprocess.Popen([sys.executable, "-m", "posecal", *track_args(tiny, server.url, "--out", "-")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                                env=os.environ | {"PYTHONPATH": str(REPO)})
        try:
            first = proc.stdout.readline()                   # the run is under way
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            rest, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 130, err
    records = records_of(first + rest)
    assert len(records) >= 2
    lines = err.strip().splitlines()
    assert lines[-1] == f"posecal: interrupted (Ctrl-C): kept the results of the {len(records)} frame(s) tracked -> -"
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_reader_that_leaves_stdout_stops_the_run_quietly(tiny, tmp_path):
    with MjpegServer(drawn_jpegs(10), fps=25) as server:
        proc = subprocess.Popen([sys.executable, "-m", "posecal", *track_args(tiny, server.url, "--out", "-")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                                env=os.environ | {"PYTHONPATH": str(REPO)})
        try:
            json.loads(proc.stdout.readline())
            proc.stdout.close()                              # as `| head -1` does
            err = proc.stderr.read()
            proc.wait(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by the reader of the records left" in err and "Traceback" not in err
    assert "BrokenPipeError" not in err


def test_predict_streams_one_record_per_image_to_stdout(tiny, tmp_path, capsys):
    from conftest import make_coco

    ann, img_dir = make_coco(tmp_path / "data", n_images=3)
    base = ["predict", str(img_dir), "--model", str(tiny), "--detector", "none", "--min-pose-quality", "0",
            "--annotations", str(ann), "--batch-size", "2"]
    assert main(base + ["--out", str(tmp_path / "p.json"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(base + ["--out", "-"]) == 0
    captured = capsys.readouterr()
    records = records_of(captured.out)                          # nothing but records on stdout
    assert [r["file_name"] for r in records] == ["img0.jpg", "img1.jpg", "img2.jpg"]
    assert [r["frame"] for r in records] == [0, 1, 2]           # counted from 0, as track's
    assert [p["image_id"] for r in records for p in r["people"]] == [1, 2, 3]   # the annotation file's image ids
    assert [p for r in records for p in r["people"]] == json.loads((tmp_path / "p.json").read_text())
    assert "person(s) in 3 image(s)" in captured.err            # the summary line moved to stderr


def test_ctrl_c_is_a_request_to_stop_between_frames():
    before = signal.getsignal(signal.SIGINT)   # Python's default, or SIG_IGN in a job started in the background
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert stop.requested
    assert signal.getsignal(signal.SIGINT) is before


def test_duration_bounds_a_video_file_too(tiny, tmp_path, capsys):
    video = write_walking_video(tmp_path / "long.mp4", frames=150)
    out = tmp_path / "t.jsonl"
    assert main(track_args(tiny, video, "--out", out, "--duration", 0.05, "--no-progress")) == 0
    assert len(records_of(out.read_text())) < 150
    assert "stopped by --duration" in capsys.readouterr().err


def test_show_without_a_display_is_one_line_and_the_run_goes_on(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    video = write_walking_video(tmp_path / "walk.mp4")
    assert main(track_args(tiny, video, "--out", tmp_path / "t.json", "--show", "--no-progress")) == 0
    err = capsys.readouterr().err
    assert err.count("--show:") == 1 and "going on without a window" in err
    assert (tmp_path / "t.json").is_file()


@needs_videos
def test_the_shipped_models_records_on_a_real_video_match_the_schema(tmp_path, capsys):
    out = tmp_path / "walk.jsonl"
    assert main(["track", str(WALKING), "--out", str(out), "--max-frames", "6", "--backend", "torch",
                 "--threads", "1", "--no-progress"]) == 0
    records = records_of(out.read_text())
    assert [r["frame"] for r in records] == list(range(6))
    people = [p for r in records for p in r["people"]]
    assert people and all({"track_id", "visibility", "visibility_probs", "frame_index"} <= set(p) for p in people)
    # the detector runs on every third frame; the frames between carry the poses by optical flow, and say so
    sources = {r["frame"]: {p["pose_source"] for p in r["people"]} for r in records if r["people"]}
    assert all(found <= ({"detected", "held"} if frame % 3 == 0 else {"carried", "held"})
               for frame, found in sources.items()), sources
    assert any("carried" in found for found in sources.values()) and any("detected" in found for found in sources.values())
