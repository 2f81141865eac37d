"""Door counting from an overhead camera: source → detect → track → count, all on the device.

Frames never leave this package; only :class:`shared.protocol.CrossingRow`
events do.
"""
