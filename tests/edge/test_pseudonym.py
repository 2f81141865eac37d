"""Pseudonyms are keyed (not plain hashes), stable within an epoch, and honour opt-out."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from edge_agent.wifi.fingerprint import ie_signature
from edge_agent.wifi.pseudonym import Pseudonymiser, parse_mac
from edge_agent.wifi.ratchet import KeyRatchet

MAC = bytes.fromhex("da:a1:19:00:11:22".replace(":", ""))


def _ie(element_id: int, body: bytes) -> bytes:
    return bytes([element_id, len(body)]) + body


RATES = _ie(1, bytes([0x82, 0x84, 0x8B, 0x96]))
HT_CAPS = _ie(45, bytes(26))
VENDOR = _ie(221, bytes.fromhex("0017f20a000104"))


@pytest.fixture
def pseudonymiser(tmp_path):
    p = Pseudonymiser(KeyRatchet(tmp_path / "k", 1, 86_400, b"s" * 32), opt_out_macs=frozenset({MAC}))
    p.use_epoch(1)
    return p


def test_pseudonym_is_truncated_hmac_not_a_plain_hash(pseudonymiser):
    other = bytes.fromhex("001122334455")
    value = pseudonymiser.pseudonym(other)
    pseudonym_key = hmac.new(b"s" * 32, b"footfall/v1/pseudonym", hashlib.sha256).digest()
    expected = int.from_bytes(hmac.new(pseudonym_key, other, hashlib.sha256).digest()[:8], "big", signed=True)
    assert value == expected
    plain = int.from_bytes(hashlib.sha256(other).digest()[:8], "big", signed=True)
    assert value != plain
    assert -(1 << 63) <= value < (1 << 63)
    assert pseudonymiser.pseudonym(other) == value  # stable within the epoch


def test_epoch_change_changes_pseudonyms(pseudonymiser):
    other = bytes.fromhex("001122334455")
    before = pseudonymiser.pseudonym(other)
    pseudonymiser.use_epoch(2)
    assert pseudonymiser.pseudonym(other) != before


def test_opt_out(pseudonymiser):
    assert pseudonymiser.is_opted_out(MAC)
    assert not pseudonymiser.is_opted_out(bytes(6))


def test_fingerprint_ignores_ssid_and_channel_but_not_capabilities(pseudonymiser):
    home = _ie(0, b"HomeNet") + RATES + _ie(3, b"\x01") + HT_CAPS + VENDOR
    work = _ie(0, b"") + RATES + _ie(3, b"\x0b") + HT_CAPS + VENDOR
    other_phone = _ie(0, b"HomeNet") + RATES + _ie(3, b"\x01") + VENDOR
    assert pseudonymiser.fingerprint(home) == pseudonymiser.fingerprint(work)
    assert pseudonymiser.fingerprint(home) != pseudonymiser.fingerprint(other_phone)
    assert b"HomeNet" not in ie_signature(home)
    assert 0 <= pseudonymiser.fingerprint(home) < (1 << 32)


def test_truncated_elements_do_not_raise():
    assert ie_signature(RATES + bytes([45, 26, 1, 2])) == RATES
    assert ie_signature(b"\x01") == b""


@pytest.mark.parametrize("text", ["aa:bb:cc:dd:ee:ff", "AA-BB-CC-DD-EE-FF", " aa:bb:cc:dd:ee:ff "])
def test_parse_mac(text):
    assert parse_mac(text) == bytes.fromhex("aabbccddeeff")


@pytest.mark.parametrize("text", ["aa:bb:cc:dd:ee", "zz:bb:cc:dd:ee:ff", "aabbccddeeff", ""])
def test_parse_mac_rejects(text):
    with pytest.raises(ValueError, match="aa:bb:cc:dd:ee:ff"):
        parse_mac(text)
