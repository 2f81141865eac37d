"""The pseudonym key ratchet: forward secrecy and safe persistence."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat

import pytest

from edge_agent.wifi.pseudonym import Pseudonymiser
from edge_agent.wifi.ratchet import KeyRatchet, KeyStateError, StaleEpochError, next_key

DAY_S = 86_400
MAC = bytes.fromhex("a4c3f0112233")


def test_step_is_hmac_chain_and_persisted(tmp_path):
    path = tmp_path / "pseudonym.key"
    ratchet = KeyRatchet(path, 100, DAY_S, b"k" * 32)
    key = ratchet.key_for_epoch(102)
    assert key == next_key(next_key(b"k" * 32))
    assert key == hmac.new(next_key(b"k" * 32), b"footfall/v1/ratchet", hashlib.sha256).digest()
    saved = json.loads(path.read_text())
    assert saved["epoch"] == 102 and base64.b64decode(saved["key"]) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KeyRatchet.load(path).key_for_epoch(102) == key


def test_old_epochs_cannot_be_recomputed_from_what_the_device_keeps(tmp_path):
    """After a step, neither the state file nor the live object yields the old key or pseudonyms."""
    path = tmp_path / "pseudonym.key"
    old_key = b"\x07" * 32
    ratchet = KeyRatchet(path, 500, DAY_S, old_key)
    pseudonymiser = Pseudonymiser(ratchet)
    pseudonymiser.use_epoch(500)
    old_pseudonym = pseudonymiser.pseudonym(MAC)

    pseudonymiser.use_epoch(501)
    new_pseudonym = pseudonymiser.pseudonym(MAC)
    assert new_pseudonym != old_pseudonym

    kept = path.read_bytes()
    assert base64.b64encode(old_key) not in kept and old_key not in kept
    with pytest.raises(StaleEpochError):
        ratchet.key_for_epoch(500)
    with pytest.raises(StaleEpochError):
        pseudonymiser.use_epoch(500)
    # Reloading from disk is no way back either.
    reloaded = Pseudonymiser(KeyRatchet.load(path))
    with pytest.raises(StaleEpochError):
        reloaded.use_epoch(500)
    reloaded.use_epoch(501)
    assert reloaded.pseudonym(MAC) == new_pseudonym
    # No temp file with the old key is left behind.
    assert [p.name for p in tmp_path.iterdir()] == ["pseudonym.key"]


def test_devices_of_one_group_agree_after_independent_steps(tmp_path):
    first = Pseudonymiser(KeyRatchet(tmp_path / "a.key", 10, DAY_S, b"g" * 32))
    second = Pseudonymiser(KeyRatchet(tmp_path / "b.key", 10, DAY_S, b"g" * 32))
    first.use_epoch(11)
    first.use_epoch(14)
    second.use_epoch(14)
    assert first.pseudonym(MAC) == second.pseudonym(MAC)


def test_missing_and_corrupt_state_name_the_fix(tmp_path):
    with pytest.raises(KeyStateError, match="provisioning bundle|keygen"):
        KeyRatchet.load(tmp_path / "absent.key")
    bad = tmp_path / "bad.key"
    bad.write_text("{not json")
    with pytest.raises(KeyStateError, match="unreadable"):
        KeyRatchet.load(bad)


def test_create_starts_at_the_epoch_of_the_given_time(tmp_path):
    ratchet = KeyRatchet.create(tmp_path / "k.key", start_timestamp_s=5 * DAY_S + 10)
    assert ratchet.epoch == 5
    assert KeyRatchet.load(tmp_path / "k.key").epoch == 5
