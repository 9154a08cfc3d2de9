"""A local MJPEG-over-HTTP server (multipart/x-mixed-replace JPEGs, as IP cameras and `mjpg-streamer` serve) for
the live-source tests and bench/live_latency.py: real frames, at a real-time pace, bound to 127.0.0.1 only.

Why our own: no camera and no network here; a thread serving a real video's frames is the nearest thing to an IP
camera that a test can start, stop mid-stream (a camera that drops) and pause (a stream that stalls).
"""
from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

BOUNDARY = "posecalframe"


def video_jpegs(path, quality: int = 85, limit: int | None = None) -> list[bytes]:
    """The frames of a video file as JPEG bytes (read once: serving them costs no decoding)."""
    cap = cv2.VideoCapture(str(path))
    out = []
    while limit is None or len(out) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        out.append(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
    cap.release()
    if not out:
        raise ValueError(f"{path}: no frames")
    return out


def drawn_jpegs(n: int = 30, size=(320, 240)) -> list[bytes]:
    """Frames made here (a moving stick figure on grey), for tests that run without the shared videos."""
    w, h = size
    out = []
    for i in range(n):
        img = np.full((h, w, 3), 90, np.uint8)
        x = 60 + (i * 4) % (w - 120)
        cv2.circle(img, (x, 50), 14, (200, 200, 230), -1)
        cv2.line(img, (x, 64), (x, 140), (40, 40, 160), 8)
        cv2.line(img, (x, 80), (x - 30, 115), (40, 40, 160), 6)
        cv2.line(img, (x, 80), (x + 30, 115), (40, 40, 160), 6)
        cv2.line(img, (x, 140), (x - 20, 200), (60, 60, 60), 7)
        cv2.line(img, (x, 140), (x + 20, 200), (60, 60, 60), 7)
        out.append(cv2.imencode(".jpg", img)[1].tobytes())
    return out


class MjpegServer:
    """Serves `jpegs` in a loop at `fps` to every client of http://127.0.0.1:PORT/stream (each client from the
    first frame). `stop_after` seconds after a client connects, its stream is cut (a camera dropping); from
    `stall_after` seconds after the first client connected, it sends nothing more and closes nothing (a stall, for
    good: a client that reconnects gets the headers and then silence; counted from the first connection, not the
    server's start, so a client slow to start on a busy machine still gets its first frames). stop() shuts the server down (the port is
    freed)."""

    def __init__(self, jpegs: list[bytes], fps: float = 25.0, stop_after: float | None = None,
                 stall_after: float | None = None, loop: bool = True):
        self.jpegs, self.fps, self.loop = jpegs, fps, loop
        self.stop_after, self.stall_after = stop_after, stall_after
        self.clients = 0
        self.frames_sent = 0
        self.first_client: float | None = None   # when the first client connected (stall_after counts from it)
        self._stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):   # quiet: tests read stderr of the client, not ours
                pass

            def do_GET(self):
                if self.path != "/stream":
                    self.send_error(404)
                    return
                server.clients += 1
                if server.first_client is None:
                    server.first_client = time.monotonic()
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                server._serve(self.wfile)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/stream"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def _serve(self, wfile) -> None:
        start, i = time.monotonic(), 0
        try:
            while not self._stopping.is_set():
                now = time.monotonic() - start
                if self.stop_after is not None and now >= self.stop_after:
                    return
                if self.stall_after is not None and time.monotonic() - self.first_client >= self.stall_after:
                    self._stopping.wait(3600)   # silent, connection open, until the server stops
                    return
                if not self.loop and i >= len(self.jpegs):
                    return
                data = self.jpegs[i % len(self.jpegs)]
                wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                            .encode() + data + b"\r\n")
                wfile.flush()
                self.frames_sent += 1
                i += 1
                delay = start + i / self.fps - time.monotonic()   # real-time pace, no drift
                if delay > 0:
                    self._stopping.wait(delay)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            return

    def stop(self) -> None:
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":   # python tests/mjpeg_server.py VIDEO [FPS]: serve it until Ctrl-C
    import sys

    with MjpegServer(video_jpegs(Path(sys.argv[1])), float(sys.argv[2]) if len(sys.argv) > 2 else 25.0) as s:
        print(s.url, flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
