-- Device health from the retained status messages (issue 5), in typed columns
-- so operators can query "which devices are offline, behind or evicting" without
-- digging through last_status. Every column is nullable: it stays empty until a
-- status carrying that field arrives. Filled by collector/db/writer.py.
ALTER TABLE footfall.devices
    ADD COLUMN status_state           text,
    ADD COLUMN status_received_at     timestamptz,
    ADD COLUMN spool_batches          integer,
    ADD COLUMN spool_bytes            bigint,
    ADD COLUMN evicted_batches        bigint,
    ADD COLUMN evicted_events         bigint,
    ADD COLUMN dropped_frames         bigint,
    ADD COLUMN wifi_state             text,
    ADD COLUMN camera_state           text,
    ADD COLUMN clock_skew_s           double precision,
    ADD COLUMN clock_skew_measured_at timestamptz;

COMMENT ON COLUMN footfall.devices.status_state IS 'online, or offline (said on stop, or the last will after a lost connection)';
COMMENT ON COLUMN footfall.devices.status_received_at IS 'collector clock when the latest status arrived';
COMMENT ON COLUMN footfall.devices.spool_batches IS 'batches waiting in the device spool (not yet acked by a collector)';
COMMENT ON COLUMN footfall.devices.evicted_batches IS 'batches the device evicted unsent because its spool was full (since the spool was created)';
COMMENT ON COLUMN footfall.devices.dropped_frames IS 'frames the live Wi-Fi capture lost in the kernel (since the agent started)';
COMMENT ON COLUMN footfall.devices.clock_skew_s IS
    'device clock minus collector receive time of a live status; includes the network and broker delay, so it understates a fast device clock by that delay';
