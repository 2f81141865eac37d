"""Provisioning a fleet: CA and certificates (``pki``), key groups and device bundles (``fleet``), SD cards (``sdcard``)."""
