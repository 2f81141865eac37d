"""The spool on real SQLite files: seq numbers, crash safety, bounds, full disks, corruption."""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge_agent.spool import SEQ_RESERVATION_BLOCK, Spool, SpoolConfig, SpoolFullError
from tests.edge.edge_helpers import decode_message, message_maker
from shared.config import ConfigError, build
from shared.signing import DeviceSigner

REPO = Path(__file__).resolve().parents[2]


def stored(spool: Spool) -> list[int]:
    return [seq for seq, _ in spool.pending(after_seq=0, limit=1_000_000)]


def test_seq_is_monotonic_from_1_and_survives_reopen(tmp_path: Path, signer: DeviceSigner) -> None:
    path = tmp_path / "spool.sqlite3"
    make = message_maker(signer)
    spool = Spool(path)
    assert [spool.append(make, 3) for _ in range(5)] == [1, 2, 3, 4, 5]
    assert spool.ack(3) == 3
    spool.close()

    spool = Spool(path)
    assert stored(spool) == [4, 5]
    assert spool.append(make, 3) == 6  # never reused, even after deletion
    spool.ack(6)
    assert spool.append(make, 3) == 7
    stats = spool.stats()
    assert (stats.batches, stats.oldest_seq, stats.next_seq) == (1, 7, 8)
    spool.close()


def test_spool_floor_is_the_oldest_stored_seq(tmp_path: Path, signer: DeviceSigner) -> None:
    spool = Spool(tmp_path / "spool.sqlite3")
    make = message_maker(signer)
    floors = []
    for _ in range(4):
        seq = spool.append(make, 3)
        floors.append(decode_message(spool.pending(seq - 1, 1)[0][1]).spool_floor)
        if seq == 2:
            spool.ack(2)
    assert floors == [1, 1, 3, 3]  # empty spool: the floor is the new seq itself


def test_messages_round_trip_and_pending_pages_in_seq_order(tmp_path: Path, signer: DeviceSigner) -> None:
    spool = Spool(tmp_path / "spool.sqlite3")
    make = message_maker(signer)
    for _ in range(10):
        spool.append(make, 3)
    page = spool.pending(after_seq=4, limit=3)
    assert [seq for seq, _ in page] == [5, 6, 7]
    assert [decode_message(message).seq for _, message in page] == [5, 6, 7]


def test_eviction_drops_oldest_first_and_counts(tmp_path: Path, signer: DeviceSigner) -> None:
    make = message_maker(signer, events=10)
    size = len(make(1, 1))
    spool = Spool(tmp_path / "spool.sqlite3", max_bytes=5 * size + size // 2)
    for _ in range(8):
        spool.append(make, 10)
    assert stored(spool) == [4, 5, 6, 7, 8]
    stats = spool.stats()
    assert (stats.evicted_batches, stats.evicted_events) == (3, 30)
    assert stats.bytes <= spool.max_bytes
    # The newest batch tells the collector that seqs 1-3 will never come.
    assert decode_message(spool.pending(7, 1)[0][1]).spool_floor == 4
    spool.close()
    assert Spool(tmp_path / "spool.sqlite3").stats().evicted_batches == 3  # persisted


def test_full_disk_evicts_oldest_and_the_agent_keeps_appending(tmp_path: Path, signer: DeviceSigner) -> None:
    spool = Spool(tmp_path / "spool.sqlite3")
    make = message_maker(signer, events=40)
    for _ in range(300):
        spool.append(make, 40)
    # A full disk, simulated: the database may not grow past its current size plus a little.
    pages = spool._db.execute("PRAGMA page_count").fetchone()[0]
    spool._db.execute(f"PRAGMA max_page_count={pages + 4}")
    seqs = [spool.append(make, 40) for _ in range(200)]
    assert seqs == list(range(301, 501))
    stats = spool.stats()
    assert 0 < stats.evicted_batches < 300
    assert stats.evicted_events == 40 * stats.evicted_batches
    remaining = stored(spool)
    assert remaining == list(range(stats.evicted_batches + 1, 501))  # oldest went first, none in between

    huge = message_maker(signer, events=20_000, line="x" * 20)  # more than all the space the file may use
    with pytest.raises(SpoolFullError):
        spool.append(huge, 20_000)
    assert stored(spool) == remaining  # a failed append evicts nothing
    assert spool.append(make, 40) == 501  # and the agent goes on; the failed seq was never stored


@pytest.mark.parametrize("offset", [0, 4096], ids=["file-header", "b-tree-page"])
def test_corrupt_file_is_moved_aside_and_seqs_are_not_reused(
    tmp_path: Path, signer: DeviceSigner, caplog: pytest.LogCaptureFixture, offset: int
) -> None:
    path = tmp_path / "spool.sqlite3"
    make = message_maker(signer, events=100)
    spool = Spool(path)
    for _ in range(30):
        spool.append(make, 100)
    spool.close()
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xff" * 64)
    with caplog.at_level(logging.ERROR, logger="edge_agent.spool"):
        spool = Spool(path)
    aside = list(tmp_path.glob("spool.sqlite3.corrupt-*"))
    assert len(aside) == 1
    assert [r for r in caplog.records if "moved it to" in r.getMessage()]
    assert stored(spool) == []
    assert spool.append(make, 3) == SEQ_RESERVATION_BLOCK + 1  # above every seq handed out before


def test_garbage_file_from_the_start_is_replaced(tmp_path: Path, signer: DeviceSigner) -> None:
    path = tmp_path / "spool.sqlite3"
    path.write_bytes(b"\x00garbage" * 1000)
    spool = Spool(path)
    assert spool.append(message_maker(signer), 3) == 1
    assert len(list(tmp_path.glob("*.corrupt-*"))) == 1


def test_kill_9_leaves_a_consistent_spool(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    for round_ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.edge.edge_child", "append", str(path)], cwd=REPO, stdout=subprocess.PIPE
        )
        assert child.stdout is not None
        first = int(child.stdout.readline())
        time.sleep(0.3 + 0.2 * round_)
        child.send_signal(signal.SIGKILL)
        child.wait()
        spool = Spool(path)  # runs quick_check; a torn file would be moved aside
        assert not list(tmp_path.glob("*.corrupt-*"))
        seqs = stored(spool)
        stats = spool.stats()
        assert seqs and seqs[-1] > first
        assert seqs == list(range(seqs[0], stats.next_seq))  # contiguous up to the last committed
        for seq, message in spool.pending(0, 1_000_000):
            assert decode_message(message).seq == seq  # nothing half-written
        assert stats.bytes == sum(len(m) for _, m in spool.pending(0, 1_000_000))
        spool.close()


def test_pipeline_and_uplink_threads_share_the_spool(tmp_path: Path, signer: DeviceSigner) -> None:
    spool = Spool(tmp_path / "spool.sqlite3")
    make = message_maker(signer)
    done = threading.Event()
    acked: list[int] = []

    def uplink() -> None:
        while not done.is_set() or spool.stats().batches:
            page = spool.pending(after_seq=acked[-1] if acked else 0, limit=10)
            if page:
                acked.append(page[-1][0])
                spool.ack(page[-1][0])

    thread = threading.Thread(target=uplink)
    thread.start()
    seqs = [spool.append(make, 3) for _ in range(300)]
    done.set()
    thread.join(10)
    assert seqs == list(range(1, 301))
    assert acked[-1] == 300 and spool.stats().batches == 0 and spool.stats().bytes == 0


def test_synchronous_full_is_a_constructor_choice(tmp_path: Path, signer: DeviceSigner) -> None:
    spool = Spool(tmp_path / "spool.sqlite3", synchronous="FULL")
    assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert spool._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    spool.append(message_maker(signer), 3)
    spool.sync()
    with pytest.raises(ValueError):
        Spool(tmp_path / "other.sqlite3", synchronous="OFF")  # type: ignore[arg-type]


def test_config_defaults_and_errors(tmp_path: Path) -> None:
    config = build(SpoolConfig, {"synchronous": "FULL"})
    assert (config.max_bytes, config.path) == (64 << 20, None)
    spool = Spool.from_config(config, default_path=tmp_path / "state" / "spool.sqlite3")
    assert spool.path == tmp_path / "state" / "spool.sqlite3" and spool.max_bytes == 64 << 20
    explicit = build(SpoolConfig, {"path": str(tmp_path / "mine.sqlite3")})
    assert Spool.from_config(explicit, default_path=tmp_path / "ignored").path == tmp_path / "mine.sqlite3"
    with pytest.raises(ConfigError, match="NORMAL"):
        build(SpoolConfig, {"synchronous": "OFF"})
    with pytest.raises(ConfigError, match="at least"):
        build(SpoolConfig, {"max_bytes": 1000})
