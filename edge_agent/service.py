"""Wires the agent's stages and supervises them.

    frames ─▶ WifiPath ─▶ BatchAssembler ─▶ Spool ─▶ Uplink ─▶ broker
    (source)  (parse, pseudonymise,  (signed      (SQLite)  (own thread)
               aggregate)             batches)

The source loop runs on the calling thread and is the only writer of the
spool; the uplink reads and deletes from its own thread. A stop request
(SIGTERM) ends the source, pushes everything buffered into the spool — so
nothing captured is lost — and then disconnects.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from edge_agent.batcher import BatchAssembler
from edge_agent.camera.worker import CameraWorker
from edge_agent.config import AgentConfig
from edge_agent.spool import Spool
from edge_agent.uplink import Uplink
from edge_agent.wifi.pipeline import WifiPath
from edge_agent.wifi.pseudonym import Pseudonymiser
from edge_agent.wifi.ratchet import KeyRatchet
from shared.logs import version
from shared.signing import DeviceSigner

log = logging.getLogger("footfall.agent")

#: How often the source loop hands closed windows to the batcher (wall-clock seconds).
PUMP_INTERVAL_S = 0.25
#: Frames between checks of the clock and the stop flag (cheap enough per frame, but why pay it).
CHECK_EVERY_FRAMES = 512
PROGRESS_INTERVAL_S = 5.0
#: How long a stopping agent waits for the camera thread's current frame.
CAMERA_JOIN_S = 10.0


class AgentService:
    """One running agent: keys, Wi-Fi path, batcher, spool and uplink."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.stop_event = threading.Event()
        signer = DeviceSigner.from_file(config.signing_key_path)
        ratchet = KeyRatchet.load(config.pseudonym_key_path)
        self.wifi = WifiPath(Pseudonymiser(ratchet, config.pseudonym.opt_out_set()), config.wifi.window_s)
        self.spool = Spool.from_config(dataclasses.replace(config.spool, path=config.spool_path))
        self.assembler = BatchAssembler(config.site_id, config.device_id, signer, self.spool, config.batch)
        self.uplink = Uplink(config.mqtt, self.spool, config.site_id, config.device_id, self.status)
        self.source_state = "idle"
        self.camera = CameraWorker(config.camera) if config.camera.enabled else None

    def start(self) -> None:
        self.uplink.start()
        if self.camera is not None:
            self.camera.start()
        log.info("agent started site=%s device=%s version=%s", self.config.site_id, self.config.device_id, version())

    def status(self) -> dict[str, Any]:
        """Fields the retained status adds to the uplink's own (counters only: no pseudonyms, no MACs)."""
        return {
            "agent_version": version(),
            "wifi": {"state": self.source_state, **self.wifi.stats.as_dict(), "skipped": self.wifi.skipped.as_dict()},
            "batches_written": self.assembler.batches_written,
            **({"camera": self.camera.status()} if self.camera is not None else {}),
        }

    def run_wifi(self, frames: Iterable[tuple[float, int, bytes]], live: bool, total_frames: int | None = None) -> None:
        """Feed a frame source through the path until it ends or a stop is requested."""
        wifi, assembler, stop = self.wifi, self.assembler, self.stop_event
        self.source_state = "capturing"
        next_pump_s = next_progress_s = time.monotonic()
        countdown = CHECK_EVERY_FRAMES
        add_frame = wifi.add_frame
        for timestamp_s, linktype, frame in frames:
            add_frame(timestamp_s, linktype, frame)
            countdown -= 1
            if countdown:
                continue
            countdown = CHECK_EVERY_FRAMES
            if stop.is_set():
                break
            now = time.monotonic()
            if now >= next_pump_s:
                next_pump_s = now + PUMP_INTERVAL_S
                assembler.add_windows(wifi.flush_before(time.time()) if live else wifi.drain())
                self._hand_over_crossings()
                assembler.flush_due()
            if now >= next_progress_s:
                next_progress_s = now + PROGRESS_INTERVAL_S
                self._log_progress(total_frames)
        assembler.add_windows(wifi.flush_all())
        self._stop_camera()
        assembler.flush()
        self.source_state = "stopped" if stop.is_set() else "finished"
        self._log_progress(total_frames)

    def run_camera(self) -> None:
        """Without a Wi-Fi source: pump camera crossings into batches until the camera ends or a stop."""
        assert self.camera is not None
        while self.camera.running and not self.stop_event.wait(PUMP_INTERVAL_S):
            self._hand_over_crossings()
            self.assembler.flush_due()
        self._stop_camera()
        self.assembler.flush()

    def _hand_over_crossings(self) -> None:
        """The camera thread queues crossings; this (the batcher's) thread moves them into batches."""
        if self.camera is not None:
            self.assembler.add_crossings(self.camera.drain())

    def _stop_camera(self) -> None:
        if self.camera is None:
            return
        self.camera.stop()
        self.camera.join(CAMERA_JOIN_S)
        self._hand_over_crossings()

    def stop(self) -> None:
        self.stop_event.set()
        if self.camera is not None:
            self.camera.stop()

    def close(self, wait_acked_s: float = 0.0) -> bool:
        """Wait up to ``wait_acked_s`` for the collector to ack everything, then disconnect."""
        delivered = self.uplink.wait_idle(wait_acked_s) if wait_acked_s > 0 else not self.spool.stats().batches
        self.uplink.stop()
        self.spool.close()
        log.info("agent stopped delivered_all=%s", delivered)
        return delivered

    def _log_progress(self, total_frames: int | None) -> None:
        frames = self.wifi.stats.frames
        share = f" ({100 * frames / total_frames:.0f}%)" if total_frames else ""
        spool = self.spool.stats()
        log.info(
            "wifi progress frames=%d%s probe_requests=%d batches=%d spooled=%d acked_seq=%d",
            frames,
            share,
            self.wifi.stats.probe_requests,
            self.assembler.batches_written,
            spool.batches,
            self.uplink.stats().acked_seq,
        )
