"""Capability fingerprints of probe requests: what a phone's radio can do, not what it is looking for.

A phone that rotates its randomised MAC keeps its chipset, driver and OS, and
those decide the capability elements of its probe requests (Vanhoef et al.,
2016). The fingerprint is built from the elements that stay the same across
every probe request of one device on one band:

* Supported Rates (1) and Extended Supported Rates (50);
* HT Capabilities (45) and VHT Capabilities (191).

Everything else is left out, on evidence from the real captures in
``../shared/data/wifi``: the SSID (0) is private and changes per probe; the DS
parameter set (3) is the current channel; FILS request parameters (extension
element 2) change per scan; and several phones alternate between two layouts
of the remaining elements — wildcard probes without HE capabilities and with a
vendor element, directed probes with them, and the extended capabilities (127)
differing between the two — so including those elements would split one phone
into two devices. Fewer elements also means the fingerprint identifies a
device class, not a device, which is all the linker needs from it.
"""

from __future__ import annotations

SUPPORTED_RATES = 1
EXTENDED_SUPPORTED_RATES = 50
HT_CAPABILITIES = 45
VHT_CAPABILITIES = 191
#: The elements that describe the radio; their order in this tuple is the order in the signature.
CAPABILITY_ELEMENTS = (SUPPORTED_RATES, EXTENDED_SUPPORTED_RATES, HT_CAPABILITIES, VHT_CAPABILITIES)


def ie_signature(information_elements: bytes) -> bytes:
    """The capability elements of a probe request, id-length-body each, in a fixed order.

    A fixed order (not the frame's) because the stack reorders elements between
    probe types. A truncated trailing element is ignored rather than rejected:
    capture drivers cut frames, and the elements before the cut still describe the device.
    """
    found: dict[int, bytes] = {}
    offset, end = 0, len(information_elements)
    while offset + 2 <= end:
        element_id = information_elements[offset]
        stop = offset + 2 + information_elements[offset + 1]
        if stop > end:
            break
        if element_id in CAPABILITY_ELEMENTS and element_id not in found:
            found[element_id] = information_elements[offset:stop]
        offset = stop
    return b"".join(found[element_id] for element_id in CAPABILITY_ELEMENTS if element_id in found)
