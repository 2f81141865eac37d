"""MQTT topic names of protocol v1, in one place so both sides agree.

Every topic is ``footfall/v1/{site_id}/{device_id}/{kind}``. IDs are restricted to
``[A-Za-z0-9_-]`` so they can never inject MQTT wildcards (``+``, ``#``) or
extra levels (``/``) into a topic, an ACL pattern or a certificate CN.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

PREFIX = "footfall/v1"
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")

TopicKind = Literal["batch", "status", "ack"]
TOPIC_KINDS: tuple[TopicKind, ...] = ("batch", "status", "ack")

#: What a collector subscribes to: every device's batches and status messages.
BATCH_SUBSCRIPTION = f"{PREFIX}/+/+/batch"
STATUS_SUBSCRIPTION = f"{PREFIX}/+/+/status"


class DeviceTopic(NamedTuple):
    """A parsed topic: which device it belongs to and what it carries."""

    site_id: str
    device_id: str
    kind: TopicKind


def is_valid_id(value: str) -> bool:
    """True when ``value`` is a legal site or device ID."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def check_id(value: str, what: str) -> str:
    """Return ``value`` or raise ``ValueError`` naming ``what`` and the allowed form."""
    if not is_valid_id(value):
        raise ValueError(f"{what} {value!r} is not valid: use 1-64 characters from A-Z a-z 0-9 _ -")
    return value


def device_topic(site_id: str, device_id: str, kind: TopicKind) -> str:
    """The topic of one device for one kind of message."""
    check_id(site_id, "site id")
    check_id(device_id, "device id")
    return f"{PREFIX}/{site_id}/{device_id}/{kind}"


def batch_topic(site_id: str, device_id: str) -> str:
    return device_topic(site_id, device_id, "batch")


def status_topic(site_id: str, device_id: str) -> str:
    return device_topic(site_id, device_id, "status")


def ack_topic(site_id: str, device_id: str) -> str:
    return device_topic(site_id, device_id, "ack")


def parse_topic(topic: str) -> DeviceTopic | None:
    """Split a v1 device topic; ``None`` for anything that is not one."""
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != PREFIX:
        return None
    site_id, device_id, kind = parts[2], parts[3], parts[4]
    if kind not in TOPIC_KINDS or not is_valid_id(site_id) or not is_valid_id(device_id):
        return None
    return DeviceTopic(site_id, device_id, kind)  # type: ignore[arg-type]


def shared_subscription(topic_filter: str, group: str | None) -> str:
    """Wrap a filter in an MQTT 5 shared subscription so N collectors split the load."""
    if not group:
        return topic_filter
    check_id(group, "shared subscription group")
    return f"$share/{group}/{topic_filter}"
