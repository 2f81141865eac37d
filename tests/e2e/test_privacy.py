"""Privacy red line: no raw MAC and no SSID in any byte that leaves the capture code.

The agent replays a real capture, in both passer-by modes; we record
everything it publishes (every topic), everything it writes to its state
directory (spool, WAL, key state) and everything it logs at DEBUG level, and
look for each source MAC of the capture in every byte order and text form we
can think of, and for every network name the phones probed for.
"""

from __future__ import annotations

import base64
import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest

from edge_agent.wifi.pcap import open_capture
from edge_agent.wifi.probe import parse_frame
from tests.e2e.conftest import BRNO_DAY, spooled_batches
from tests.realdata import require_real_data

pytestmark = pytest.mark.slow


def mac_forms(mac: bytes) -> set[bytes]:
    """Encodings of one MAC that a careless program might write."""
    forms = {mac, mac[::-1], base64.b64encode(mac), base64.urlsafe_b64encode(mac)}
    for octets in (mac, mac[::-1]):
        hex_text = octets.hex()
        forms |= {
            hex_text.encode(),
            ":".join(hex_text[i : i + 2] for i in range(0, 12, 2)).encode(),
            "-".join(hex_text[i : i + 2] for i in range(0, 12, 2)).encode(),
            ".".join(hex_text[i : i + 4] for i in range(0, 12, 4)).encode(),
            str(int.from_bytes(octets, "big")).encode(),
        }
    return forms


def find_macs(blob: bytes, needles: set[bytes]) -> set[bytes]:
    """Every needle occurring in ``blob`` (case-insensitively for text forms)."""
    haystacks = (blob, blob.lower())
    found: set[bytes] = set()
    for length in {len(n) for n in needles}:
        for haystack in haystacks:
            windows = {haystack[i : i + length] for i in range(len(haystack) - length + 1)}
            found |= windows & needles
    return found


class Recorder:
    """Subscribes to everything on the broker and keeps every payload and topic."""

    def __init__(self, host: str, port: int) -> None:
        self.messages: list[bytes] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="privacy-recorder")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_connect = lambda client, *args: client.subscribe("#", qos=1)
        self.client.connect(host, port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "recorder could not subscribe"

    def _on_message(self, _client, _userdata, message) -> None:
        with self._lock:
            self.messages.append(message.topic.encode() + b"\n" + message.payload)

    def close(self) -> bytes:
        self.client.loop_stop()
        self.client.disconnect()
        return b"\n".join(self.messages)


def ssids_of(probes: list) -> set[bytes]:
    """Network names of at least 4 bytes the phones probed for (shorter ones occur in any binary by chance)."""
    ssids = set()
    for probe in probes:
        elements = probe.information_elements
        if elements[:1] == b"\x00" and len(elements) >= 2 and elements[1] >= 4:
            ssids.add(elements[2 : 2 + elements[1]])
    return ssids


@pytest.mark.parametrize("passersby", ["pseudonyms", "counts"])
def test_no_source_mac_in_anything_published_spooled_or_logged(system, broker, passersby):
    capture = require_real_data(BRNO_DAY)
    probes = [
        probe
        for timestamp_s, linktype, frame in open_capture(capture)
        if (probe := parse_frame(timestamp_s, linktype, frame)) is not None
    ]
    macs = {probe.source_mac for probe in probes}
    assert len(macs) > 1_000
    needles = set().union(*(mac_forms(mac) for mac in macs))
    ssids = ssids_of(probes)
    assert len(ssids) > 10
    ssid_needles = ssids | {ssid.hex().encode() for ssid in ssids} | {base64.b64encode(ssid) for ssid in ssids}

    config = system.provision_device(
        "lab", "pos1", "2022-11-22", log_level="DEBUG", wifi={"passersby": passersby}
    )
    recorder = Recorder(broker.host, broker.port)
    # No collector: nothing gets acked, so every batch is still in the spool when the agent exits.
    result = subprocess.run(
        system.agent_replay_command(config, capture, speed="max", wait_acked_s=3),
        capture_output=True,
        timeout=120,
    )
    published = recorder.close()
    state_dir = system.workdir / "agent-lab-pos1"
    assert result.returncode == 1  # not acknowledged: exactly what keeps the spool full
    assert spooled_batches(state_dir) > 0
    assert published.count(b"/batch\n") >= spooled_batches(state_dir)
    logged = result.stdout + result.stderr
    assert b"DEBUG" in logged or b"INFO" in logged

    stored = b"".join(path.read_bytes() for path in sorted(state_dir.rglob("*")) if path.is_file())
    counts_block = b"\xa9passersby"  # the msgpack key of the batch block (the status names the mode in JSON)
    assert (counts_block in published) == (passersby == "counts")
    for name, blob in (("published", published), ("spooled", stored), ("logged", logged)):
        leaked = find_macs(blob, needles)
        assert not leaked, f"{len(leaked)} MAC forms found in what the agent {name}, e.g. {sorted(leaked)[:3]}"
        leaked = find_macs(blob, ssid_needles)
        assert not leaked, f"{len(leaked)} SSIDs found in what the agent {name}, e.g. {sorted(leaked)[:3]}"


def test_the_detector_finds_a_planted_mac():
    """The scan above only means something if it can find a MAC when there is one."""
    mac = bytes.fromhex("da11c0ffee42")
    needles = mac_forms(mac)
    for planted in (b"x" + mac + b"y", b"seen DA:11:C0:FF:EE:42 here", b"42eeffc011da", b"da11.c0ff.ee42"):
        assert find_macs(b"noise " + planted + b" noise", needles)
    assert not find_macs(b"nothing to see here " * 100, needles)
