"""De-randomisation on the device: link the rotating MACs of one phone into one cluster.

Phones put a fresh random MAC into their probe requests every few minutes,
some (recent iPhones) on every channel of every scan, so counting MACs counts
hundreds of "devices" per phone. The linker attributes each new MAC to a
cluster — one physical device — with the evidence the literature uses
(Vanhoef et al., 2016; Tan & Chan, 2021), strongest first:

1. **Sequence-number continuity**: many drivers keep the 802.11 sequence
   counter across a MAC change, so the new MAC continues a recent cluster's
   last sequence number within ``seq_window``.
2. **Burst**: a phone that changes MAC inside one scan burst (within
   ``burst_gap_s``, similar RSSI) is the device that just went quiet.
3. **Timing**: within ``max_gap_s``, when only one recent cluster carries
   the capability fingerprint, the new MAC is that device; when several do,
   the one heard at the most similar RSSI (within ``rssi_db``) wins.

Burst and timing links only go to a device that rotates: one that kept its
MAC for ``stable_mac_s`` (a staff phone with a fixed random MAC, an
associated laptop) is still on air with it, so the new MAC is someone else —
typically a customer with the same phone model.

Candidates must share the capability fingerprint and be *free*: a phone uses
one MAC at a time, so a cluster heard after the new MAC appeared cannot be it.
Universally administered MACs are globally unique and never rotate, so they
are never linked (a desktop PC must not swallow a phone with the same chipset);
``link_universal_macs`` exists only for captures whose MACs were re-randomised
by anonymisation. Anything ambiguous beyond these rules becomes a new cluster:
in a crowded room, a wrong link hides a person, a missing link only splits one.

The cluster id is the pseudonym of the cluster's first MAC. It is derived from
keyed material every sensor of the key group shares, so two sensors that hear
a phone from the same MAC on agree on its id; where they start from different
MACs, the collector merges clusters that share a MAC pseudonym
(:mod:`collector.analytics.devices`). The linker sees pseudonyms only, never a
raw MAC, and forgets an epoch's pseudonyms once its last window has closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SEQUENCE_MODULUS = 4096
#: A new MAC may start this much before its cluster's last frame: sniffer clocks and frame ordering jitter.
OVERLAP_TOLERANCE_S = 0.1
#: Weight of the newest sighting in a cluster's RSSI estimate.
RSSI_SMOOTHING = 0.3


@dataclass(frozen=True)
class LinkerConfig:
    """Thresholds of the linker; the defaults are the ones evaluated in bench/wifi_accuracy.py."""

    enabled: bool = field(default=True, metadata={"help": "link the randomised MACs of one phone into one cluster"})
    max_gap_s: float = field(default=300.0, metadata={"help": "longest silence a timing link bridges, seconds"})
    burst_gap_s: float = field(default=1.0, metadata={"help": "MAC changes within one scan burst, seconds"})
    burst_rssi_db: float = field(default=10.0, metadata={"help": "largest RSSI difference within one burst, dB"})
    seq_window: int = field(default=8, metadata={"help": "largest sequence-number step that counts as continuity"})
    seq_gap_s: float = field(default=120.0, metadata={"help": "longest silence a sequence-number link bridges"})
    rssi_db: float = field(default=6.0, metadata={"help": "largest RSSI difference of an ambiguous timing link, dB"})
    stable_mac_s: float = field(
        default=900.0, metadata={"help": "a MAC kept this long does not rotate: no burst or timing link to it, seconds"}
    )
    forget_after_s: float = field(
        default=1_800.0, metadata={"help": "forget MACs silent for this long (bounds memory)"}
    )
    link_universal_macs: bool = field(
        default=False, metadata={"help": "also link globally unique MACs; only for re-randomised (anonymised) captures"}
    )

    def __post_init__(self) -> None:
        for name in ("max_gap_s", "burst_gap_s", "burst_rssi_db", "seq_gap_s", "rssi_db", "stable_mac_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"wifi.linker.{name} must not be negative")
        if not 0 <= self.seq_window < SEQUENCE_MODULUS // 2:
            raise ValueError(f"wifi.linker.seq_window must be within 0..{SEQUENCE_MODULUS // 2 - 1}")
        if self.forget_after_s < max(self.max_gap_s, self.seq_gap_s):
            raise ValueError("wifi.linker.forget_after_s must be at least max_gap_s and seq_gap_s")


class _Cluster:
    """What the linker remembers of one physical device."""

    __slots__ = ("cluster_id", "fingerprint", "last_seen_s", "seq_last", "rssi_dbm", "mac_since_s")

    def __init__(self, cluster_id: int, fingerprint: int, last_seen_s: float) -> None:
        self.cluster_id = cluster_id
        self.fingerprint = fingerprint
        self.last_seen_s = last_seen_s
        #: When the cluster's newest MAC was first heard.
        self.mac_since_s = last_seen_s
        self.seq_last: int | None = None
        self.rssi_dbm: float | None = None


@dataclass
class LinkStats:
    """How new MACs were attributed; reported in the agent's status."""

    sequence: int = 0
    burst: int = 0
    timing: int = 0
    new_clusters: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class _EpochLinks:
    """Clusters of one key epoch: pseudonyms of different epochs are unrelated numbers."""

    def __init__(self) -> None:
        self.cluster_of: dict[int, _Cluster] = {}
        self.by_fingerprint: dict[int, list[_Cluster]] = {}
        self.next_sweep_s = float("-inf")


class DeviceLinker:
    """Maps MAC pseudonyms to cluster ids, one sighting at a time, in time order."""

    def __init__(self, config: LinkerConfig = LinkerConfig()) -> None:
        self.config = config
        self.stats = LinkStats()
        self._epochs: dict[int, _EpochLinks] = {}

    def cluster_for(
        self,
        epoch: int,
        pseudonym: int,
        first_seen_s: float,
        last_seen_s: float,
        fingerprint: int,
        randomized: bool,
        seq_first: int | None,
        seq_last: int | None,
        rssi_dbm: float | None,
    ) -> int:
        """The cluster id of one sighting; feed sightings in order of their first frame."""
        links = self._epochs.get(epoch)
        if links is None:
            links = self._start_epoch(epoch)
        cluster = links.cluster_of.get(pseudonym)
        if cluster is None:
            cluster = self._attribute(links, pseudonym, first_seen_s, fingerprint, randomized, seq_first, rssi_dbm)
            links.cluster_of[pseudonym] = cluster
            cluster.mac_since_s = first_seen_s
        if last_seen_s > cluster.last_seen_s:
            cluster.last_seen_s = last_seen_s
        if seq_last is not None:
            cluster.seq_last = seq_last
        if rssi_dbm is not None:
            previous = cluster.rssi_dbm
            cluster.rssi_dbm = rssi_dbm if previous is None else previous + RSSI_SMOOTHING * (rssi_dbm - previous)
        if first_seen_s >= links.next_sweep_s:
            self._forget_silent(links, first_seen_s)
        return cluster.cluster_id

    @property
    def tracked_macs(self) -> int:
        return sum(len(links.cluster_of) for links in self._epochs.values())

    def retire_before(self, epoch: int) -> None:
        """Forget every epoch older than ``epoch``: its windows are closed, its key is gone."""
        for old in [e for e in self._epochs if e < epoch]:
            del self._epochs[old]

    def _start_epoch(self, epoch: int) -> _EpochLinks:
        """Keep the newest two epochs: windows of the previous one may still be closing."""
        links = self._epochs[epoch] = _EpochLinks()
        for old in [e for e in self._epochs if e < max(self._epochs) - 1]:
            del self._epochs[old]
        return links

    def _attribute(
        self,
        links: _EpochLinks,
        pseudonym: int,
        first_seen_s: float,
        fingerprint: int,
        randomized: bool,
        seq_first: int | None,
        rssi_dbm: float | None,
    ) -> _Cluster:
        config, stats = self.config, self.stats
        if not config.enabled or not (randomized or config.link_universal_macs):
            stats.new_clusters += 1
            return _Cluster(pseudonym, fingerprint, first_seen_s)
        horizon_s = max(config.max_gap_s, config.seq_gap_s)
        recent = [c for c in links.by_fingerprint.get(fingerprint, ()) if first_seen_s - c.last_seen_s <= horizon_s]
        links.by_fingerprint[fingerprint] = recent
        free = [c for c in recent if c.last_seen_s <= first_seen_s + OVERLAP_TOLERANCE_S]

        def rssi_difference(cluster: _Cluster) -> float:
            if rssi_dbm is None or cluster.rssi_dbm is None:
                return 0.0
            return abs(rssi_dbm - cluster.rssi_dbm)

        if seq_first is not None and config.seq_window:
            steps = [
                ((seq_first - c.seq_last) % SEQUENCE_MODULUS, c)
                for c in free
                if c.seq_last is not None and first_seen_s - c.last_seen_s <= config.seq_gap_s
            ]
            continuing = [(step, c) for step, c in steps if 0 < step <= config.seq_window]
            if continuing:
                stats.sequence += 1
                return min(continuing, key=lambda pair: (pair[0], -pair[1].last_seen_s))[1]

        def rotates(cluster: _Cluster) -> bool:
            """A device that kept its MAC for ``stable_mac_s`` does not rotate (a staff phone, an
            associated laptop): only sequence-number continuity may link a new MAC to it."""
            return cluster.last_seen_s - cluster.mac_since_s <= config.stable_mac_s

        in_burst = [
            c
            for c in free
            if rotates(c)
            and first_seen_s - c.last_seen_s <= config.burst_gap_s
            and rssi_difference(c) <= config.burst_rssi_db
        ]
        if in_burst:
            stats.burst += 1
            return max(in_burst, key=lambda c: c.last_seen_s)
        in_reach = [c for c in recent if first_seen_s - c.last_seen_s <= config.max_gap_s]
        timed = [c for c in free if rotates(c) and first_seen_s - c.last_seen_s <= config.max_gap_s]
        if len(in_reach) == 1 and timed:
            stats.timing += 1
            return timed[0]
        close = [c for c in timed if rssi_difference(c) <= config.rssi_db]
        if close:
            stats.timing += 1
            return min(close, key=lambda c: (rssi_difference(c), -c.last_seen_s))
        stats.new_clusters += 1
        cluster = _Cluster(pseudonym, fingerprint, first_seen_s)
        recent.append(cluster)
        return cluster

    def _forget_silent(self, links: _EpochLinks, now_s: float) -> None:
        """Drop MACs and clusters silent for ``forget_after_s``; one sweep per quarter of that (of stream time)."""
        cutoff_s = now_s - self.config.forget_after_s
        links.cluster_of = {p: c for p, c in links.cluster_of.items() if c.last_seen_s >= cutoff_s}
        links.by_fingerprint = {
            fingerprint: kept
            for fingerprint, clusters in links.by_fingerprint.items()
            if (kept := [c for c in clusters if c.last_seen_s >= cutoff_s])
        }
        links.next_sweep_s = now_s + self.config.forget_after_s / 4
