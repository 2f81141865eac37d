-- footfall schema v1: sites, devices, zones, the ingest ledger and the raw event tables.
-- Every timestamp is timestamptz in UTC; each site's time zone gives its local days.
-- Documented table by table in docs/schema.md.

CREATE TABLE footfall.sites (
    site_id     text PRIMARY KEY CHECK (site_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    name        text,
    time_zone   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A CHECK constraint cannot query a catalog, so a trigger validates the zone name.
CREATE FUNCTION footfall.check_site_time_zone() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = NEW.time_zone) THEN
        RAISE EXCEPTION 'unknown time zone "%"', NEW.time_zone
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'use an IANA time zone name such as Europe/Prague';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER sites_time_zone_is_known
    BEFORE INSERT OR UPDATE OF time_zone ON footfall.sites
    FOR EACH ROW EXECUTE FUNCTION footfall.check_site_time_zone();

CREATE TABLE footfall.devices (
    site_id        text NOT NULL REFERENCES footfall.sites (site_id),
    device_id      text NOT NULL CHECK (device_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    public_key     bytea NOT NULL CHECK (octet_length(public_key) = 32),
    enrolled_at    timestamptz NOT NULL DEFAULT now(),
    acked_seq      bigint NOT NULL DEFAULT 0 CHECK (acked_seq >= 0),
    last_seen_at   timestamptz,
    last_status    jsonb,
    agent_version  text,
    PRIMARY KEY (site_id, device_id)
);

CREATE TABLE footfall.zones (
    site_id       text NOT NULL REFERENCES footfall.sites (site_id),
    zone_id       text NOT NULL CHECK (zone_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    device_id     text NOT NULL,
    rssi_min_dbm  smallint NOT NULL CHECK (rssi_min_dbm BETWEEN -120 AND 0),
    rssi_max_dbm  smallint NOT NULL CHECK (rssi_max_dbm BETWEEN -120 AND 0),
    description   text,
    PRIMARY KEY (site_id, zone_id),
    FOREIGN KEY (site_id, device_id) REFERENCES footfall.devices (site_id, device_id),
    CHECK (rssi_min_dbm <= rssi_max_dbm)
);

CREATE TABLE footfall.ingest_batches (
    site_id        text NOT NULL,
    device_id      text NOT NULL,
    batch_seq      bigint NOT NULL CHECK (batch_seq > 0),
    received_at    timestamptz NOT NULL,
    created_at     timestamptz NOT NULL,
    key_epoch      bigint NOT NULL,
    body_sha256    bytea NOT NULL CHECK (octet_length(body_sha256) = 32),
    sightings      integer NOT NULL,
    crossings      integer NOT NULL,
    passersby      integer NOT NULL,
    message_bytes  integer NOT NULL,
    PRIMARY KEY (site_id, device_id, batch_seq),
    FOREIGN KEY (site_id, device_id) REFERENCES footfall.devices (site_id, device_id)
);

CREATE TABLE footfall.ingest_rejects (
    reject_id       bigserial PRIMARY KEY,
    received_at     timestamptz NOT NULL,
    topic           text NOT NULL,
    site_id         text,
    device_id       text,
    batch_seq       bigint,
    reason          text NOT NULL,
    detail          text NOT NULL,
    payload_bytes   integer NOT NULL,
    payload_sha256  bytea NOT NULL CHECK (octet_length(payload_sha256) = 32)
);
CREATE INDEX ingest_rejects_received_at ON footfall.ingest_rejects (received_at);

-- Raw events. Partitions are created on demand by collector/db/partitions.py;
-- there is deliberately no DEFAULT partition (it would have to be split later).
CREATE TABLE footfall.wifi_sightings (
    site_id       text NOT NULL,
    device_id     text NOT NULL,
    batch_seq     bigint NOT NULL,
    window_start  timestamptz NOT NULL,
    window_s      smallint NOT NULL,
    pseudonym     bigint NOT NULL,
    key_epoch     bigint NOT NULL,
    frames        integer NOT NULL,
    rssi_max      smallint,
    rssi_mean     real,
    channel       smallint NOT NULL,
    randomized    boolean NOT NULL,
    fingerprint   bigint NOT NULL,
    seq_first     smallint,
    seq_last      smallint
) PARTITION BY RANGE (window_start);
CREATE INDEX wifi_sightings_site_time ON footfall.wifi_sightings (site_id, window_start);

CREATE TABLE footfall.door_crossings (
    site_id     text NOT NULL,
    device_id   text NOT NULL,
    batch_seq   bigint NOT NULL,
    crossed_at  timestamptz NOT NULL,
    line_id     text NOT NULL,
    direction   text NOT NULL CHECK (direction IN ('in', 'out')),
    track_id    bigint NOT NULL
) PARTITION BY RANGE (crossed_at);
CREATE INDEX door_crossings_site_time ON footfall.door_crossings (site_id, crossed_at);

CREATE TABLE footfall.passerby_counts (
    site_id       text NOT NULL,
    device_id     text NOT NULL,
    batch_seq     bigint NOT NULL,
    bucket_start  timestamptz NOT NULL,
    bucket_s      integer NOT NULL,
    devices       integer NOT NULL,
    frames        integer NOT NULL
) PARTITION BY RANGE (bucket_start);
CREATE INDEX passerby_counts_site_time ON footfall.passerby_counts (site_id, bucket_start);
