"""Camera sources: files at their pace or unthrottled, and live streams that die, stall and come back.

The live tests serve a small video over HTTP from a thread on the loopback
interface — OpenCV's FFmpeg backend reads it like any IP camera — and then
cut it off or stall it, which is what a flaky camera does.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.camera.source import CameraSource, describe_source

FPS = 25.0
FRAMES = 30


@pytest.fixture(scope="module")
def small_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames of a moving square, MJPG in AVI (readable by every OpenCV build)."""
    path = tmp_path_factory.mktemp("video") / "small.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (160, 120))
    for index in range(FRAMES):
        image = np.full((120, 160, 3), 90, np.uint8)
        cv2.rectangle(image, (5 * index, 40), (5 * index + 20, 70), (240, 240, 240), -1)
        writer.write(image)
    writer.release()
    return path


def drain(source: CameraSource, stop: threading.Event, limit: int, timeout_s: float) -> list:
    """Frames from the source until ``limit`` of them or the timeout (then the source is stopped)."""
    timer = threading.Timer(timeout_s, stop.set)
    timer.start()
    frames = []
    try:
        for frame in source.frames():
            frames.append(frame)
            if len(frames) >= limit:
                break
    finally:
        timer.cancel()
        stop.set()
    return frames


@pytest.mark.parametrize(
    ("spec", "kind"),
    [("0", "device"), ("/dev/video2", "device"), ("rtsp://cam/stream", "stream"), ("http://cam/mjpg", "stream"),
     ("door.mp4", "file")],
)  # fmt: skip
def test_sources_are_recognised(spec, kind):
    assert describe_source(spec)[0] == kind


def test_a_file_as_fast_as_possible_is_anchored_to_end_about_now(small_video):
    stop = threading.Event()
    source = CameraSource(str(small_video), stop, pace="max")
    started_s = time.time()
    frames = list(source.frames())
    assert len(frames) == FRAMES and source.status.state == "finished"
    assert np.diff([f.t_s for f in frames]) == pytest.approx(np.full(FRAMES - 1, 1 / FPS), abs=1e-5)
    assert started_s - 2 < frames[-1].t_s <= time.time()
    assert source.status_dict()["frames"] == FRAMES


def test_a_file_at_native_pace_takes_its_own_duration(small_video):
    source = CameraSource(str(small_video), threading.Event(), pace="native")
    started = time.monotonic()
    assert len(list(source.frames())) == FRAMES
    assert time.monotonic() - started >= (FRAMES - 1) / FPS * 0.95


def test_a_missing_file_fails_without_raising(tmp_path):
    source = CameraSource(str(tmp_path / "nope.avi"), threading.Event())
    assert list(source.frames()) == []
    assert source.status.state == "failed" and "cannot open" in source.status.last_error


def test_a_dead_camera_url_is_retried_with_backoff_until_stopped():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stop = threading.Event()
    source = CameraSource(f"http://127.0.0.1:{port}/video", stop, reconnect_min_s=0.05, reconnect_max_s=0.2, stall_s=1.0)
    started = time.monotonic()
    assert drain(source, stop, limit=1, timeout_s=1.5) == []
    assert time.monotonic() - started < 5, "a stop ends the backoff wait"
    assert source.status.state == "stopped"
    assert "cannot open" in source.status.last_error


class _VideoServer:
    """Serves one file over HTTP; ``stall_after_bytes`` makes it hang mid-file like a frozen camera."""

    def __init__(self, path: Path, stall_after_bytes: int | None = None) -> None:
        payload = path.read_bytes()
        release = self.release = threading.Event()
        self.requests = 0
        server_self = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server_self.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "video/x-msvideo")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    if stall_after_bytes is None or server_self.requests > 1:
                        self.wfile.write(payload)
                    else:
                        self.wfile.write(payload[:stall_after_bytes])
                        self.wfile.flush()
                        release.wait(30)  # a frozen camera: the connection stays open, nothing comes
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/door.avi"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve(small_video: Path) -> Iterator:
    servers: list[_VideoServer] = []

    def start(stall_after_bytes: int | None = None) -> _VideoServer:
        servers.append(_VideoServer(small_video, stall_after_bytes))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_a_stream_that_ends_is_reopened_and_frames_keep_coming(serve):
    server = serve()
    stop = threading.Event()
    source = CameraSource(server.url, stop, reconnect_min_s=0.05, reconnect_max_s=0.1, stall_s=2.0)
    frames = drain(source, stop, limit=FRAMES + 10, timeout_s=20)
    assert len(frames) == FRAMES + 10, source.status
    assert source.status.reconnects >= 1 and server.requests >= 2
    assert [f.index for f in frames] == list(range(FRAMES + 10)), "frame numbers run on across reconnects"


def test_a_stalled_stream_is_reported_and_reopened(serve, small_video):
    server = serve(stall_after_bytes=small_video.stat().st_size // 2)
    stop = threading.Event()
    source = CameraSource(server.url, stop, reconnect_min_s=0.05, reconnect_max_s=0.1, stall_s=1.0)
    states: list[str] = []
    watcher_stop = threading.Event()

    def watch() -> None:
        while not watcher_stop.wait(0.1):
            states.append(source.status_dict()["state"])

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        frames = drain(source, stop, limit=FRAMES + 5, timeout_s=30)
    finally:
        watcher_stop.set()
        watcher.join()
    assert len(frames) == FRAMES + 5, source.status
    assert source.status.reconnects >= 1
    assert "stalled" in states
