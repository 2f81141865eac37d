"""Information-element fingerprints of probe requests.

The set, order and content of the information elements a phone puts in its
probe requests depend on its chipset, driver and OS version, and stay the same
when the phone rotates its randomised MAC (Vanhoef et al., 2016). That makes
the IE layout a linking feature. The SSID (which networks the phone looks for:
home, work) and the DS parameter set (the current channel) are left out: the
first is private, the second changes with the channel, not with the device.
"""

from __future__ import annotations

SSID_ELEMENT_ID = 0
DS_PARAMETER_ELEMENT_ID = 3
_EXCLUDED = frozenset({SSID_ELEMENT_ID, DS_PARAMETER_ELEMENT_ID})


def ie_signature(information_elements: bytes) -> bytes:
    """The device-describing part of the IEs, in order; SSID and channel removed.

    A truncated trailing element is ignored rather than rejected: capture
    drivers cut frames, and the elements before the cut still describe the device.
    """
    parts: list[bytes] = []
    offset, end = 0, len(information_elements)
    while offset + 2 <= end:
        element_id = information_elements[offset]
        length = information_elements[offset + 1]
        stop = offset + 2 + length
        if stop > end:
            break
        if element_id not in _EXCLUDED:
            parts.append(information_elements[offset:stop])
        offset = stop
    return b"".join(parts)
