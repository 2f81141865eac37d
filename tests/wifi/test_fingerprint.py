"""Capability fingerprints: stable across one phone's probe types, different across phone models."""

from __future__ import annotations

from collections import Counter

from edge_agent.wifi.fingerprint import ie_signature
from edge_agent.wifi.pcap import open_capture
from edge_agent.wifi.probe import parse_frame
from tests.realdata import require_real_data


def element(element_id: int, body: bytes) -> bytes:
    return bytes([element_id, len(body)]) + body


RATES = element(1, bytes.fromhex("02040b16"))
EXTENDED_RATES = element(50, bytes.fromhex("0c1218243048606c"))
HT = element(45, bytes.fromhex("ef0113ffff") + bytes(21))
VHT = element(191, bytes.fromhex("92f19033faff6203faff6203"))


def test_probe_types_of_one_phone_share_the_signature_and_the_ssid_never_enters_it():
    """A wildcard and a directed probe of one phone, as the Oppo in the Polimi data sends them."""
    wildcard = (
        element(0, b"") + RATES + EXTENDED_RATES + element(3, b"\x01") + HT + VHT
        + element(127, bytes.fromhex("00000a8200400000000120")) + element(255, b"\x02\x00\x46")
        + element(221, bytes.fromhex("8cfdf00101020100"))
    )  # fmt: skip
    directed = (
        element(0, b"HomeNetwork") + RATES + EXTENDED_RATES + element(3, b"\x06") + HT
        + element(127, bytes.fromhex("04000a8200400040800120")) + VHT + element(255, b"\x23" + bytes(25))
        + element(255, b"\x02\x00\x2a")
    )  # fmt: skip
    assert ie_signature(wildcard) == ie_signature(directed) == RATES + EXTENDED_RATES + HT + VHT
    assert b"HomeNetwork" not in ie_signature(directed)


def test_another_radio_has_another_signature_and_truncation_is_tolerated():
    assert ie_signature(RATES + HT) != ie_signature(RATES + element(45, bytes(26)))
    assert ie_signature(RATES + HT + b"\xbf\x0c\x92") == RATES + HT  # VHT element cut off by the driver


def _signatures(name: str) -> Counter[bytes]:
    capture = require_real_data(f"wifi/polimi/{name}")
    return Counter(
        ie_signature(probe.information_elements)
        for timestamp_s, linktype, frame in open_capture(capture)
        if (probe := parse_frame(timestamp_s, linktype, frame)) is not None
    )


def test_real_phones_keep_one_signature_and_models_differ():
    oppo = _signatures("OppoFindX3Neo-A_anonymized.pcap")
    iphone7 = _signatures("iPhone7-F_anonymized.pcap")
    iphone11 = _signatures("iPhone11-C_anonymized.pcap")
    assert oppo.most_common(1)[0][1] >= 0.99 * sum(oppo.values())  # one stray frame in 1,185
    assert len(iphone7) == len(iphone11) == 1
    assert set(iphone7).isdisjoint(iphone11) and set(iphone7).isdisjoint(oppo)
