"""Every privacy mode, through the real path into real signed batches in a real spool.

frames → WifiPath (parse, pseudonymise, aggregate, link) → [PasserbyFilter] → BatchAssembler → Spool;
the batches are then read back from the spool and decoded exactly as the collector would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import Counter
from pathlib import Path

import pytest

from edge_agent.batcher import BatchAssembler, BatchConfig
from edge_agent.spool import Spool
from edge_agent.wifi.passersby import PasserbyFilter
from edge_agent.wifi.pcap import open_capture
from edge_agent.wifi.pipeline import WifiPath
from edge_agent.wifi.probe import parse_frame
from edge_agent.wifi.pseudonym import PSEUDONYM_LABEL, Pseudonymiser
from edge_agent.wifi.ratchet import KeyRatchet, StaleEpochError
from edge_agent.wifi.sightings import ClosedWindow
from shared.protocol import Batch, PasserbyRow, SightingRow, decode_body, open_message
from shared.signing import DeviceSigner
from tests.realdata import require_real_data

BRNO = "wifi/brno/2022-11-22_position_1.pcap"
DAY_S = 86_400
KEY = bytes(range(32))


def path_for(tmp_path: Path, capture: Path, opt_out: frozenset[bytes] = frozenset(), period_s: int = DAY_S) -> WifiPath:
    first_s = next(iter(open_capture(capture)))[0]
    ratchet = KeyRatchet(tmp_path / "pseudonym.key", int(first_s // period_s), period_s, KEY)
    return WifiPath(Pseudonymiser(ratchet, opt_out))


def run(path: WifiPath, capture: Path) -> list[ClosedWindow]:
    for frame in open_capture(capture):
        path.add_frame(*frame)
    return path.flush_all()


def spooled(tmp_path: Path, windows: list[ClosedWindow], passersby=()) -> tuple[list[Batch], bytes]:
    """Batch, sign and spool; return the decoded batches and every byte the spool holds."""
    spool = Spool(tmp_path / "spool.sqlite3")
    assembler = BatchAssembler("lab", "pos1", DeviceSigner.generate(), spool, BatchConfig(max_events=5_000))
    assembler.add_windows(windows)
    for counts in passersby:
        assembler.add_passersby(counts.epoch, counts.bucket_s, counts.rows)
    assembler.flush()
    messages = [message for _, message in spool.pending(0, 100_000)]
    spool.close()
    batches = [decode_body(open_message(message).body) for message in messages]
    stored = b"".join(p.read_bytes() for p in sorted(tmp_path.glob("spool.sqlite3*")))
    return batches, stored


def sightings(batches: list[Batch]) -> list[SightingRow]:
    return [row for batch in batches if batch.sightings for row in batch.sightings.rows]


def passerby_rows(batches: list[Batch]) -> list[PasserbyRow]:
    return [row for batch in batches if batch.passersby for row in batch.passersby.rows]


def probe_requests(capture: Path):
    return [p for t, lt, f in open_capture(capture) if (p := parse_frame(t, lt, f)) is not None]


def pseudonym_of(mac: bytes, epoch: int, tmp_path: Path) -> int:
    """What the key group would call ``mac`` in ``epoch`` (a second device with the same key)."""
    pseudonymiser = Pseudonymiser(KeyRatchet(tmp_path / "other.key", epoch, DAY_S, KEY))
    pseudonymiser.use_epoch(epoch)
    return pseudonymiser.pseudonym(mac)


def test_an_opted_out_phone_never_reaches_a_batch(tmp_path):
    capture = require_real_data(BRNO)
    probes = probe_requests(capture)
    frames_per_mac = Counter(p.source_mac for p in probes)
    opted_out, its_frames = frames_per_mac.most_common(1)[0]
    path = path_for(tmp_path, capture, opt_out=frozenset({opted_out}))
    batches, stored = spooled(tmp_path, run(path, capture))
    rows = sightings(batches)
    assert path.stats.opted_out == its_frames > 100
    assert sum(row.frames for row in rows) == len(probes) - its_frames
    its_pseudonym = pseudonym_of(opted_out, int(probes[0].timestamp_s // DAY_S), tmp_path)
    assert its_pseudonym not in {row.pseudonym for row in rows} | {row.cluster for row in rows}
    assert its_pseudonym.to_bytes(8, "big", signed=True) not in stored


def test_ssids_never_leave_the_device(tmp_path):
    """The Oppo of the Polimi data probes for named networks: none of their names reaches a batch."""
    capture = require_real_data("wifi/polimi/OppoFindX3Neo-A_anonymized.pcap")
    ssids = set()
    for probe in probe_requests(capture):
        ies = probe.information_elements
        if ies[:1] == b"\x00" and ies[1] >= 4:
            ssids.add(ies[2 : 2 + ies[1]])
    assert len(ssids) >= 3
    batches, stored = spooled(tmp_path, run(path_for(tmp_path, capture), capture))
    assert sum(row.frames for row in sightings(batches)) == len(probe_requests(capture))
    for ssid in ssids:
        assert ssid not in stored and ssid.lower() not in stored.lower()
        assert ssid.hex().encode() not in stored and base64.b64encode(ssid) not in stored


def test_passersby_counts_mode_sends_no_pseudonym_for_devices_that_never_came_close(tmp_path):
    capture = require_real_data(BRNO)
    band_dbm = -65
    windows = run(path_for(tmp_path, capture), capture)
    everything = [row for window in windows for row in window.rows]
    visitors = {row.cluster for row in everything if row.rssi_max is not None and row.rssi_max >= band_dbm}
    passers = {row.cluster for row in everything} - visitors
    assert len(visitors) > 50 and len(passers) > 100  # the capture has both kinds

    split = PasserbyFilter(band_dbm, bucket_s=300)
    kept = split.process(windows)
    rest = split.flush()
    batches, stored = spooled(tmp_path, kept.windows + rest.windows, kept.passersby + rest.passersby)
    rows, counts = sightings(batches), passerby_rows(batches)

    assert {row.cluster for row in rows} == visitors
    sent = {row.pseudonym for row in rows} | {row.cluster for row in rows}
    # A MAC forgotten by the linker after a long silence may come back in another cluster: a MAC ever seen
    # in a visitor's cluster is the visitor's. Every other MAC and cluster id stays on the device.
    visitor_macs = {row.pseudonym for row in everything if row.cluster in visitors}
    passer_pseudonyms = ({row.pseudonym for row in everything} | passers) - visitor_macs - visitors
    assert len(passer_pseudonyms) > 100
    assert not sent & passer_pseudonyms
    assert not any(p.to_bytes(8, "big", signed=True) in stored for p in passer_pseudonyms)
    # Nothing lost: every probe request is in a visitor's sighting or in a bucket's passer-by frames.
    assert sum(row.frames for row in rows) + sum(row.frames for row in counts) == sum(row.frames for row in everything)
    assert all(row.start_s % 300 == 0 and row.devices >= 1 for row in counts)
    assert {batch.passersby.bucket_s for batch in batches if batch.passersby} == {300}


def test_a_visitor_stays_one_trajectory_after_it_walks_out_of_the_band():
    """Once a device reached the band in an epoch, its weaker sightings in later buckets are sent too."""
    near = SightingRow(1_700_000_100, 11, 11, 3, -50, -52.0, 6, True, 7, 1, 3)
    gone_far = near._replace(start_s=1_700_000_400, rssi_max=-80, rssi_mean=-82.0)
    stranger = near._replace(pseudonym=22, cluster=22, rssi_max=-85, rssi_mean=-86.0)
    split = PasserbyFilter(-65, bucket_s=300)
    first = split.process([ClosedWindow(5, 10, [near, stranger])])
    assert first.windows == [] and split.held_windows == 1  # the bucket is still open
    second = split.process([ClosedWindow(5, 10, [gone_far])])
    assert [w.rows for w in second.windows] == [[near]]
    assert second.passersby[0].rows == [PasserbyRow(1_700_000_100 // 300 * 300, 1, 3)]
    last = split.flush()
    assert [w.rows for w in last.windows] == [[gone_far]] and last.passersby == []


def test_sightings_without_signal_strength_count_as_passersby():
    row = SightingRow(1_700_000_100, 11, 11, 2, None, None, 6, True, 7, 1, 3)
    split = PasserbyFilter(-65)
    split.process([ClosedWindow(5, 10, [row])])
    flushed = split.flush()
    assert flushed.windows == [] and flushed.passersby[0].rows[0].devices == 1


def test_a_longer_key_period_keeps_pseudonyms_across_days_and_still_ratchets(tmp_path):
    """30-day keys make returning visitors visible for 30 days; at the period's end the old key is gone."""
    period_s = 30 * DAY_S
    mac = bytes.fromhex("daa119000042")
    ratchet = KeyRatchet(tmp_path / "pseudonym.key", 600, period_s, KEY)
    pseudonymiser = Pseudonymiser(ratchet)
    day_1, day_29, day_31 = (600 * period_s + d * DAY_S for d in (0, 28, 30))
    names = []
    for timestamp_s in (day_1, day_29, day_31):
        pseudonymiser.use_epoch(pseudonymiser.epoch_for(timestamp_s))
        names.append(pseudonymiser.pseudonym(mac))
    assert names[0] == names[1] != names[2]
    with pytest.raises(StaleEpochError):
        pseudonymiser.use_epoch(600)
    assert json.loads((tmp_path / "pseudonym.key").read_text())["period_s"] == period_s


def test_after_a_ratchet_step_the_old_pseudonyms_cannot_be_recomputed_from_anything_kept(tmp_path):
    """A real capture through the path, then a frame from the next day: the key file and every in-memory
    table hold nothing from which the first day's pseudonyms follow."""
    capture = require_real_data(BRNO)
    path = path_for(tmp_path, capture)
    windows = run(path, capture)
    old_pseudonyms = {row.pseudonym for window in windows for row in window.rows}
    first_s, linktype, frame = next(iter(open_capture(capture)))
    path.add_frame(first_s + DAY_S, linktype, frame)  # the first phone again, the next day
    new_windows = path.flush_all()
    assert new_windows[0].epoch == windows[0].epoch + 1
    assert not {row.pseudonym for row in new_windows[0].rows} & old_pseudonyms

    # On disk: the state file holds only the new key; no 32-byte run of it derives an old pseudonym.
    kept = (tmp_path / "pseudonym.key").read_bytes()
    assert base64.b64encode(KEY) not in kept and KEY not in kept
    key_now = base64.b64decode(json.loads(kept)["key"])
    macs = {p.source_mac for p in probe_requests(capture)}
    for candidate in {key_now} | {kept[i : i + 32] for i in range(len(kept) - 31)}:
        pseudonym_key = hmac.new(candidate, PSEUDONYM_LABEL, hashlib.sha256).digest()
        derived = {int.from_bytes(hmac.digest(pseudonym_key, mac, "sha256")[:8], "big", signed=True) for mac in macs}
        assert not derived & old_pseudonyms
    # In memory: the linker forgot the old epoch, and the path refuses to work in it again.
    assert path.linker.tracked_macs == len({row.pseudonym for row in new_windows[0].rows})
    path.add_frame(first_s + 60, linktype, frame)
    assert path.stats.stale_epoch == 1 and path.flush_all() == []
