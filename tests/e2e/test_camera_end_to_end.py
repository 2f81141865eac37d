"""A real door video through agent → broker → collector → PostgreSQL, and nothing image-like on the way.

The crossings must land as rows in ``door_crossings`` and, through the
collector's analytics, as the entries and exits of the site's ``footfall`` rows.

The agent replays ``femb_peopleCounter.avi`` with that door's installation
settings (line across the middle, in = towards the bottom of the picture),
exactly as ``footfall-agent replay --video`` does on a device.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import cv2
import pytest

from shared.protocol import decode_body, open_message
from tests.e2e.conftest import fetch, spooled_batches
from tests.e2e.test_privacy import Recorder
from tests.realdata import require_real_data

pytestmark = pytest.mark.slow

FEMB = "video/femb_peopleCounter.avi"
#: femb's labels: 6 people walk down (in) and 3 up (out); the counter may be off by one per direction.
FEMB_IN, FEMB_OUT = 6, 3
FEMB_CAMERA = {
    "line": {"id": "door-a", "points": [[0.0, 0.5], [1.0, 0.5]], "in_side": "bottom"},
    "person": {"width_frac": 0.11, "height_frac": 0.2},
}


def replay_video_command(config_path: Path, video: Path, wait_acked_s: float) -> list[str]:
    return [
        sys.executable, "-m", "edge_agent", "--config", str(config_path), "replay",
        "--video", str(video), "--speed", "max", "--wait-acked-s", str(wait_acked_s),
    ]  # fmt: skip


def agent_counts(log_text: str) -> dict[str, int]:
    """The agent's own totals from its 'camera stopped' log line."""
    match = re.search(r"camera stopped state=\w+ frames=(\d+) in=(\d+) out=(\d+)", log_text)
    assert match, log_text[-2000:]
    return {"frames": int(match[1]), "in": int(match[2]), "out": int(match[3])}


def test_a_replayed_door_video_lands_in_door_crossings_and_in_footfall(system, pg_dsn):
    video = require_real_data(FEMB)
    config = system.provision_device("lab", "door1", "2024-01-01", camera=FEMB_CAMERA, batch={"max_delay_s": 0.5})
    system.start_collector("c1")
    result = subprocess.run(replay_video_command(config, video, wait_acked_s=60), capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    counted = agent_counts(result.stderr + result.stdout)
    assert counted["frames"] == 497

    rows = fetch(
        pg_dsn,
        """SELECT direction, line_id, count(*) AS n, count(DISTINCT track_id) AS tracks,
                  min(crossed_at) AS first, max(crossed_at) AS last
           FROM footfall.door_crossings WHERE site_id = 'lab' AND device_id = 'door1'
           GROUP BY direction, line_id""",
    )
    stored = {row["direction"]: row for row in rows}
    assert {row["line_id"] for row in rows} == {"door-a"}
    assert {direction: stored[direction]["n"] for direction in stored} == {"in": counted["in"], "out": counted["out"]}
    assert abs(counted["in"] - FEMB_IN) <= 1 and abs(counted["out"] - FEMB_OUT) <= 1
    span_s = (max(r["last"] for r in rows) - min(r["first"] for r in rows)).total_seconds()
    assert 0 < span_s < 497 / 24, "crossing times keep the video's own timeline"
    assert fetch(pg_dsn, "SELECT count(*) AS n FROM footfall.ingest_rejects")[0]["n"] == 0

    crossed = _crossings_per_bucket(pg_dsn, "lab")
    assert sum(n_in for n_in, _ in crossed.values()) == counted["in"]
    assert sum(n_out for _, n_out in crossed.values()) == counted["out"]
    assert _footfall_entries_exits(pg_dsn, "lab", expected=crossed) == crossed, "the site's footfall rows"


def _crossings_per_bucket(dsn: str, site_id: str) -> dict[datetime, tuple[int, int]]:
    """(in, out) door crossings per 5-minute bucket, straight from door_crossings."""
    rows = fetch(
        dsn,
        """SELECT date_bin('300 seconds', crossed_at, 'epoch') AS bucket,
                  count(*) FILTER (WHERE direction = 'in') AS n_in, count(*) FILTER (WHERE direction = 'out') AS n_out
           FROM footfall.door_crossings WHERE site_id = $1 GROUP BY bucket""",
        site_id,
    )
    return {row["bucket"]: (row["n_in"], row["n_out"]) for row in rows}


def _footfall_entries_exits(
    dsn: str, site_id: str, expected: dict[datetime, tuple[int, int]], timeout_s: float = 60.0
) -> dict[datetime, tuple[int, int]]:
    """Entries and exits per bucket of the site's footfall rows, once the collector's analytics has
    caught up with ``expected`` (or the timeout passed: then whatever is there)."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = fetch(
            dsn,
            """SELECT bucket_start, entries, exits FROM footfall.footfall
               WHERE site_id = $1 AND zone_id = '*' AND (entries > 0 OR exits > 0)""",
            site_id,
        )
        found = {row["bucket_start"]: (row["entries"], row["exits"]) for row in rows}
        if found == expected or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_no_frame_or_image_leaves_the_device(system, broker, tmp_path):
    video = require_real_data(FEMB)
    config = system.provision_device("lab", "door1", "2024-01-01", camera=FEMB_CAMERA, log_level="DEBUG")
    recorder = Recorder(broker.host, broker.port)
    # No collector: nothing is acked, so every batch is still spooled when the agent gives up waiting.
    result = subprocess.run(replay_video_command(config, video, wait_acked_s=3), capture_output=True, timeout=180)
    published = recorder.close()
    state_dir = system.workdir / "agent-lab-door1"
    assert result.returncode == 1
    assert spooled_batches(state_dir) > 0

    stored = b"".join(path.read_bytes() for path in sorted(state_dir.rglob("*")) if path.is_file())
    logged = result.stdout + result.stderr
    for name, blob in (("published", published), ("spooled", stored), ("logged", logged)):
        for magic in (b"\x89PNG", b"\xff\xd8\xff", b"RIFF", b"GIF8", b"BM6"):
            assert magic not in blob, f"{magic!r} (an image header) in what the agent {name}"
        assert not _frame_fragments(video) & _windows(blob), f"raw pixel rows of the video in what the agent {name}"
    assert not list(state_dir.rglob("*.png")), "calibrate pictures are only written when asked for"

    batches = [m for m in published.split(b"footfall/v1/lab/door1/batch\n")[1:]]
    assert batches
    for message in batches:
        batch = decode_body(open_message(message.split(b"\nfootfall/v1/")[0]).body)
        assert batch.sightings is None or not len(batch.sightings)
        assert batch.crossings is not None and len(batch.crossings)
        assert all(set(row._fields) == {"t", "line", "direction", "track"} for row in batch.crossings.rows)


FRAGMENT_BYTES = 24


def _frame_fragments(video: Path) -> set[bytes]:
    """Pixel runs from frames of the video (textured rows, not flat floor) that a leak would contain."""
    capture = cv2.VideoCapture(str(video))
    fragments: set[bytes] = set()
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % 50 == 0:
            small = cv2.resize(frame, (frame.shape[1] // 2, frame.shape[0] // 2), interpolation=cv2.INTER_AREA)
            for image in (frame, cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)):
                for y in range(0, image.shape[0], 20):
                    row = image[y].tobytes()
                    for x in range(0, len(row) - FRAGMENT_BYTES, 97):
                        piece = row[x : x + FRAGMENT_BYTES]
                        if len(set(piece)) > 8:
                            fragments.add(piece)
        index += 1
    capture.release()
    assert len(fragments) > 1_000
    return fragments


def _windows(blob: bytes) -> set[bytes]:
    return {blob[i : i + FRAGMENT_BYTES] for i in range(len(blob) - FRAGMENT_BYTES + 1)}


def test_the_fragment_scan_finds_a_planted_frame():
    """The scan above only means something if it finds pixels when a frame does leak."""
    video = require_real_data(FEMB)
    capture = cv2.VideoCapture(str(video))
    for _ in range(101):
        ok, frame = capture.read()
    capture.release()
    assert ok
    leaked = b"header" + cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).tobytes() + b"trailer"
    assert _frame_fragments(video) & _windows(leaked)
    assert not _frame_fragments(video) & _windows(bytes(range(256)) * 50)
