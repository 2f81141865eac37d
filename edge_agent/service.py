"""Wires the agent's stages and supervises them.

    frames ─▶ WifiPath ─▶ [PasserbyFilter] ─▶ BatchAssembler ─▶ Spool ─▶ Uplink ─▶ broker
    (replay   (parse, pseudonymise,  (counts-only   (signed      (SQLite)  (own thread)
     or live)  aggregate, link)       mode)          batches)

The source loop runs on the calling thread and is the only writer of the
spool; the uplink reads and deletes from its own thread. A stop request
(SIGTERM) ends the source, pushes everything buffered into the spool — so
nothing captured is lost — and then disconnects.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Iterable
from typing import Any

from edge_agent.batcher import BatchAssembler
from edge_agent.camera.worker import CameraWorker
from edge_agent.config import AgentConfig
from edge_agent.health import SOURCE_STALL_S, AgentHealth
from edge_agent.spool import Spool
from edge_agent.uplink import Uplink
from edge_agent.wifi.live import LiveSource
from edge_agent.wifi.passersby import PasserbyFilter
from edge_agent.wifi.pipeline import WifiPath
from edge_agent.wifi.pseudonym import Pseudonymiser
from edge_agent.wifi.ratchet import KeyRatchet, KeyStateError
from edge_agent.wifi.sightings import ClosedWindow
from shared.logs import version
from shared.sdnotify import SystemdNotifier
from shared.signing import DeviceSigner
from shared.watchdog import Heartbeat, WatchdogFeeder

log = logging.getLogger("footfall.agent")

#: How often the source loop hands closed windows to the batcher (wall-clock seconds).
PUMP_INTERVAL_S = 0.25
#: Frames between checks of the clock and the stop flag (cheap enough per frame, but why pay it).
CHECK_EVERY_FRAMES = 512
PROGRESS_INTERVAL_S = 5.0
#: A live agent runs for months: a progress line per quarter hour keeps the journal (and the SD card) quiet.
LIVE_PROGRESS_INTERVAL_S = 900.0
#: How long a stopping agent waits for the camera thread's current frame.
CAMERA_JOIN_S = 10.0


class AgentService:
    """One running agent: keys, Wi-Fi path, batcher, spool and uplink."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.stop_event = threading.Event()
        signer = DeviceSigner.from_file(config.signing_key_path)
        ratchet = KeyRatchet.load(config.pseudonym_key_path)
        if ratchet.period_s != config.pseudonym.period_s:
            raise KeyStateError(
                f"{config.pseudonym_key_path}: the key group's key period is {ratchet.period_s} s but "
                f"pseudonym.period_s is {config.pseudonym.period_s} s — set pseudonym.period_s: {ratchet.period_s}, "
                "or provision a key file made for the configured period"
            )
        wifi = config.wifi
        self.wifi = WifiPath(Pseudonymiser(ratchet, config.pseudonym.opt_out_set()), wifi.window_s, wifi.linker)
        self.passersby = (
            PasserbyFilter(wifi.visitor_band_dbm, wifi.passersby_bucket_s) if wifi.passersby == "counts" else None
        )
        self.capture: LiveSource | None = None
        self.spool = Spool.from_config(dataclasses.replace(config.spool, path=config.spool_path))
        self.assembler = BatchAssembler(config.site_id, config.device_id, signer, self.spool, config.batch)
        self.uplink = Uplink(config.mqtt, self.spool, config.site_id, config.device_id, self.status)
        self.source_state = "idle"
        self.camera = CameraWorker(config.camera) if config.camera.enabled else None
        #: No promise until a live source loop turns (a replay may wait long between frames).
        self.source_heartbeat = Heartbeat(math.inf)
        self.health = AgentHealth(self.uplink, self.source_heartbeat, self.camera, self.stop_event)
        self.notifier = SystemdNotifier.from_environment()
        self.watchdog = WatchdogFeeder(self.notifier, self.health.problems, self.status_line)

    def start(self) -> None:
        """Start the threads, then tell systemd we are ready (keys, spool and config already loaded)."""
        self.uplink.start()
        if self.camera is not None:
            self.camera.start()
        self.notifier.ready(self.status_line())
        self.watchdog.start()
        log.info("agent started site=%s device=%s version=%s", self.config.site_id, self.config.device_id, version())

    def status_line(self) -> str:
        """One line for ``systemctl status``."""
        spool = self.spool.stats()
        return (
            f"wifi {self.source_state}, broker {self.uplink.stats().connection}, "
            f"spool {spool.batches} batches ({spool.bytes} bytes), {spool.evicted_batches} evicted"
        )

    def live_source(self) -> LiveSource:
        """The supervised monitor-mode capture of ``wifi.interface``; its state joins the status."""
        wifi = self.config.wifi
        assert wifi.interface is not None
        self.capture = LiveSource(wifi.interface, wifi.channels, wifi.dwell_s, self.stop_event)
        return self.capture

    def status(self) -> dict[str, Any]:
        """Fields the retained status adds to the uplink's own (counters only: no pseudonyms, no MACs)."""
        wifi = {
            "state": self.source_state,
            **self.wifi.stats.as_dict(),
            "skipped": self.wifi.skipped.as_dict(),
            "linker": self.wifi.linker.stats.as_dict(),
            "passersby": self.config.wifi.passersby,
            **({"capture": self.capture.status().as_dict()} if self.capture is not None else {}),
        }
        return {
            "agent_version": version(),
            "wifi": wifi,
            "batches_written": self.assembler.batches_written,
            **({"camera": self.camera.status()} if self.camera is not None else {}),
        }

    def run_wifi(
        self, frames: Iterable[tuple[float, int, bytes] | None], live: bool, total_frames: int | None = None
    ) -> None:
        """Feed a frame source through the path until it ends or a stop is requested.

        A live source yields ``None`` while no frame arrives, so windows still
        close and batches still go out in quiet times.
        """
        wifi, assembler, stop = self.wifi, self.assembler, self.stop_event
        self.source_state = "capturing"
        next_pump_s = next_progress_s = time.monotonic()
        countdown = CHECK_EVERY_FRAMES
        add_frame = wifi.add_frame
        for item in frames:
            if item is not None:
                add_frame(*item)
                countdown -= 1
                if countdown:
                    continue
            countdown = CHECK_EVERY_FRAMES
            if stop.is_set():
                break
            self.source_heartbeat.beat(SOURCE_STALL_S if live else math.inf)
            now = time.monotonic()
            if now >= next_pump_s:
                next_pump_s = now + PUMP_INTERVAL_S
                if live:
                    wall_s = time.time()
                    self._hand_over_sightings(wifi.flush_before(wall_s), wall_s)
                else:
                    self._hand_over_sightings(wifi.drain())
                self._hand_over_crossings()
                assembler.flush_due()
            if now >= next_progress_s:
                next_progress_s = now + (LIVE_PROGRESS_INTERVAL_S if live else PROGRESS_INTERVAL_S)
                self._log_progress(total_frames)
        self._hand_over_sightings(wifi.flush_all(), final=True)
        self._stop_camera()
        assembler.flush()
        self.source_state = "stopped" if stop.is_set() else "finished"
        self._log_progress(total_frames)

    def run_camera(self) -> None:
        """Without a Wi-Fi source: pump camera crossings into batches until the camera ends or a stop."""
        assert self.camera is not None
        while self.camera.running and not self.stop_event.wait(PUMP_INTERVAL_S):
            self.source_heartbeat.beat(SOURCE_STALL_S)
            self._hand_over_crossings()
            self.assembler.flush_due()
        self._stop_camera()
        self.assembler.flush()

    def _hand_over_sightings(
        self, windows: list[ClosedWindow], now_s: float | None = None, final: bool = False
    ) -> None:
        """Closed windows to the batcher; in passers-by counts mode through the filter first."""
        if self.passersby is not None:
            split = self.passersby.process(windows, now_s)
            windows = split.windows
            passersby = split.passersby
            if final:
                rest = self.passersby.flush()
                windows, passersby = windows + rest.windows, passersby + rest.passersby
            for counts in passersby:
                self.assembler.add_passersby(counts.epoch, counts.bucket_s, counts.rows)
        self.assembler.add_windows(windows)

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
        self.notifier.stopping("stopping: moving buffered events into the spool")
        if self.camera is not None:
            self.camera.stop()

    def close(self, wait_acked_s: float = 0.0) -> bool:
        """Wait up to ``wait_acked_s`` for the collector to ack everything, then disconnect."""
        delivered = self.uplink.wait_idle(wait_acked_s) if wait_acked_s > 0 else not self.spool.stats().batches
        self.watchdog.stop()
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
