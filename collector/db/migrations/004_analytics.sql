-- Analytics (issue 6): what the collector derives from the raw event tables.
--
--   wifi_sightings ─┐                          ┌─ visits      one row per visit of one Wi-Fi device
--   door_crossings ─┼─ analytics_dirty ─ task ─┼─ trajectory  the ordered zones of each visit
--   passerby_counts ┘   (5-min buckets)        └─ footfall    per site, zone and 5-minute bucket
--
-- The writer marks the 5-minute buckets its rows fall in (analytics_dirty) in
-- the same transaction as the rows; the collector's analytics task recomputes
-- them (collector/analytics/). Every table and column is documented in
-- docs/data-model.md, with example SQL for the common questions.
-- Times are UTC; each site's time_zone gives its local hours and days.

-- ---------------------------------------------------------------- per-site thresholds
-- Defaults from the brief (section 3). Change them with UPDATE, then rebuild the
-- site's analytics (docs/data-model.md, "Changing a threshold").
ALTER TABLE footfall.sites
    ADD COLUMN visit_gap_s integer NOT NULL DEFAULT 900
        CHECK (visit_gap_s BETWEEN 60 AND 86400),
    ADD COLUMN visitor_rssi_dbm smallint NOT NULL DEFAULT -65
        CHECK (visitor_rssi_dbm BETWEEN -120 AND 0),
    ADD COLUMN visitor_min_dwell_s integer NOT NULL DEFAULT 300
        CHECK (visitor_min_dwell_s BETWEEN 0 AND 86400),
    ADD COLUMN passerby_rssi_dbm smallint NOT NULL DEFAULT -90
        CHECK (passerby_rssi_dbm BETWEEN -120 AND 0),
    ADD COLUMN presence_gap_s integer NOT NULL DEFAULT 300
        CHECK (presence_gap_s BETWEEN 0 AND 3600),
    ADD COLUMN stationary_min_hours smallint NOT NULL DEFAULT 6
        CHECK (stationary_min_hours BETWEEN 1 AND 24),
    ADD COLUMN frequent_min_days smallint NOT NULL DEFAULT 4
        CHECK (frequent_min_days >= 2),
    ADD COLUMN segment_window_days smallint NOT NULL DEFAULT 28
        CHECK (segment_window_days >= 1);

COMMENT ON COLUMN footfall.sites.visit_gap_s IS 'a silence this long or longer ends a visit, seconds (Cloud4Wi: 900)';
COMMENT ON COLUMN footfall.sites.visitor_rssi_dbm IS 'weakest RSSI of the visitor band, dBm (Aruba: -65)';
COMMENT ON COLUMN footfall.sites.visitor_min_dwell_s IS 'time in the visitor band that makes a visit a visitor''s, seconds (300)';
COMMENT ON COLUMN footfall.sites.passerby_rssi_dbm IS 'weakest RSSI counted at all by a sensor without configured zones, dBm (Aruba: -90)';
COMMENT ON COLUMN footfall.sites.presence_gap_s IS 'silences shorter than this keep a device present in devices_present, seconds';
COMMENT ON COLUMN footfall.sites.stationary_min_hours IS 'a device heard in this many distinct hours of a local day is stationary that day';
COMMENT ON COLUMN footfall.sites.frequent_min_days IS 'visit days within segment_window_days that make a visitor frequent';
COMMENT ON COLUMN footfall.sites.segment_window_days IS 'window of the visit-frequency segments, days';

-- ---------------------------------------------------------------- work queue
-- Append-only: the writer inserts, the analytics task deletes what it took.
-- No unique key, so concurrent writers never wait on each other here.
CREATE TABLE footfall.analytics_dirty (
    site_id       text NOT NULL,
    bucket_start  timestamptz NOT NULL,          -- a 5-minute bucket with new raw rows
    marked_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX analytics_dirty_site ON footfall.analytics_dirty (site_id);

-- ---------------------------------------------------------------- Wi-Fi identity
-- Which MAC pseudonym was linked to which edge cluster, and in which hours it
-- was heard. Small (a row per MAC and hour) and enough to rebuild site-wide
-- device identity (union-find over pseudonym/cluster pairs) and to find
-- stationary devices (hours heard) without rescanning wifi_sightings.
CREATE TABLE footfall.wifi_mac_hours (
    site_id     text NOT NULL,
    key_epoch   bigint NOT NULL,
    pseudonym   bigint NOT NULL,
    cluster     bigint NOT NULL,
    hour_start  timestamptz NOT NULL,
    PRIMARY KEY (site_id, key_epoch, pseudonym, cluster, hour_start)
);

-- The site-wide device (visitor_id) each MAC pseudonym belongs to: the
-- smallest pseudonym among all MACs linked to it by any sensor of the site.
-- Join wifi_sightings on (site_id, key_epoch, pseudonym) to see whose a sighting is.
CREATE TABLE footfall.wifi_identities (
    site_id     text NOT NULL,
    key_epoch   bigint NOT NULL,
    pseudonym   bigint NOT NULL,
    visitor_id  bigint NOT NULL,
    PRIMARY KEY (site_id, key_epoch, pseudonym)
);
CREATE INDEX wifi_identities_visitor ON footfall.wifi_identities (site_id, key_epoch, visitor_id);

-- ---------------------------------------------------------------- visits
-- Monthly partitions visits_pYYYYMM, created by the analytics task.
CREATE TABLE footfall.visits (
    site_id         text NOT NULL,
    visit_id        bigint NOT NULL,           -- stable: derived from site, key epoch, visitor and start
    key_epoch       bigint NOT NULL,
    visitor_id      bigint NOT NULL,           -- site-wide device, see wifi_identities
    started_at      timestamptz NOT NULL,      -- start of the first sighting window
    ended_at        timestamptz NOT NULL,      -- end of the last sighting window
    dwell_s         integer NOT NULL,          -- ended_at - started_at
    visitor_band_s  integer NOT NULL,          -- first to last moment at or above visitor_rssi_dbm
    rssi_max        smallint,                  -- loudest frame of the visit, dBm
    moments         integer NOT NULL,          -- sighting windows the visit is made of
    is_visitor      boolean NOT NULL,
    is_passerby     boolean NOT NULL,
    is_stationary   boolean NOT NULL,
    is_returning    boolean NOT NULL,          -- a visitor visit on an earlier local day, same key epoch
    closed          boolean NOT NULL,          -- the site's watermark passed ended_at + visit_gap_s
    computed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, started_at, visit_id),
    CHECK (ended_at >= started_at),
    -- exactly one kind: a visitor, a passer-by, or a stationary device
    CHECK (is_visitor::int + is_passerby::int + is_stationary::int = 1)
) PARTITION BY RANGE (started_at);
CREATE INDEX visits_visitor ON footfall.visits (site_id, key_epoch, visitor_id);
CREATE INDEX visits_open ON footfall.visits (site_id) WHERE NOT closed;

-- Monthly partitions trajectory_pYYYYMM. A segment ends where the next one
-- starts, so the dwell of a visit's segments adds up to the visit's dwell.
CREATE TABLE footfall.trajectory (
    site_id     text NOT NULL,
    visit_id    bigint NOT NULL,
    seq         integer NOT NULL CHECK (seq >= 1),
    zone_id     text NOT NULL,
    entered_at  timestamptz NOT NULL,
    exited_at   timestamptz NOT NULL,
    dwell_s     integer NOT NULL,
    rssi_max    smallint,
    PRIMARY KEY (site_id, entered_at, visit_id, seq)
) PARTITION BY RANGE (entered_at);
CREATE INDEX trajectory_visit ON footfall.trajectory (site_id, visit_id);

-- ---------------------------------------------------------------- footfall
-- One row per site, zone and 5-minute bucket; zone_id '*' is the whole site.
-- Counts are of arrivals in the bucket (visits that started, zones first
-- entered, crossings), so they add up over hours and days. A bucket without a
-- row measured nothing: read it as zeros. Monthly partitions footfall_pYYYYMM.
CREATE TABLE footfall.footfall (
    site_id             text NOT NULL,
    zone_id             text NOT NULL,
    bucket_start        timestamptz NOT NULL,
    bucket_seconds      integer NOT NULL DEFAULT 300,
    entries             integer,               -- camera 'in' crossings; '*' rows only
    exits               integer,               -- camera 'out' crossings; '*' rows only
    passersby           integer NOT NULL,
    visitors            integer NOT NULL,
    new_visitors        integer NOT NULL,
    returning_visitors  integer NOT NULL,
    devices_present     real NOT NULL,         -- mean over the bucket's minutes
    dwell_median_s      real,                  -- of the visitors counted in this row
    capture_rate        real,                  -- visitors / (visitors + passersby)
    computed_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, zone_id, bucket_start)
) PARTITION BY RANGE (bucket_start);

-- ---------------------------------------------------------------- helpers for the views
-- Median dwell of the visitors that arrived in [from_at, to_at): for '*' the
-- visit's dwell, for a zone the visit's total time in the zone, counted at its
-- first entry into the zone. Views cannot take the median of bucket medians.
CREATE FUNCTION footfall.dwell_median_s(p_site_id text, p_zone_id text, from_at timestamptz, to_at timestamptz)
RETURNS double precision
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_zone_id = '*' THEN (
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v.dwell_s)
        FROM footfall.visits v
        WHERE v.site_id = p_site_id AND v.is_visitor AND v.started_at >= from_at AND v.started_at < to_at
    ) ELSE (
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY z.zone_dwell_s)
        FROM (
            SELECT min(t.entered_at) AS first_entered_at, sum(t.dwell_s) AS zone_dwell_s
            FROM footfall.visits v
            JOIN footfall.trajectory t ON t.site_id = v.site_id AND t.visit_id = v.visit_id
            WHERE v.site_id = p_site_id AND v.is_visitor AND t.zone_id = p_zone_id
              AND v.started_at < to_at AND v.ended_at >= from_at
            GROUP BY v.visit_id
        ) z
        WHERE z.first_entered_at >= from_at AND z.first_entered_at < to_at
    ) END
$$;

-- ---------------------------------------------------------------- hourly and daily views
-- Local hours: date_trunc(..., time_zone) keeps the two 02:00 hours of an
-- autumn daylight-saving night apart, and works for half-hour offsets too.
CREATE VIEW footfall.footfall_hourly AS
SELECT f.site_id,
       f.zone_id,
       h.hour_start,
       h.hour_start AT TIME ZONE s.time_zone          AS local_hour,
       sum(f.entries)::integer                        AS entries,
       sum(f.exits)::integer                          AS exits,
       sum(f.passersby)::integer                      AS passersby,
       sum(f.visitors)::integer                       AS visitors,
       sum(f.new_visitors)::integer                   AS new_visitors,
       sum(f.returning_visitors)::integer             AS returning_visitors,
       (sum(f.devices_present * f.bucket_seconds) / 3600)::real AS devices_present,
       max(f.devices_present)                         AS devices_present_peak,
       footfall.dwell_median_s(f.site_id, f.zone_id, h.hour_start, h.hour_start + interval '1 hour')::real
                                                      AS dwell_median_s,
       (sum(f.visitors)::real / nullif(sum(f.visitors) + sum(f.passersby), 0))::real AS capture_rate,
       (sum(f.entries)::real / nullif(sum(f.passersby), 0))::real AS entry_rate
FROM footfall.footfall f
JOIN footfall.sites s USING (site_id)
CROSS JOIN LATERAL (SELECT date_trunc('hour', f.bucket_start, s.time_zone) AS hour_start) h
GROUP BY f.site_id, f.zone_id, h.hour_start, s.time_zone;

-- Local days of 23, 24 or 25 hours; day_hours says which.
CREATE VIEW footfall.footfall_daily AS
SELECT f.site_id,
       f.zone_id,
       d.local_day,
       d.day_start,
       d.day_end,
       (extract(epoch FROM d.day_end - d.day_start) / 3600)::integer AS day_hours,
       sum(f.entries)::integer                        AS entries,
       sum(f.exits)::integer                          AS exits,
       sum(f.passersby)::integer                      AS passersby,
       sum(f.visitors)::integer                       AS visitors,
       sum(f.new_visitors)::integer                   AS new_visitors,
       sum(f.returning_visitors)::integer             AS returning_visitors,
       (sum(f.devices_present * f.bucket_seconds) / 3600)::real AS device_hours,
       max(f.devices_present)                         AS devices_present_peak,
       footfall.dwell_median_s(f.site_id, f.zone_id, d.day_start, d.day_end)::real AS dwell_median_s,
       (sum(f.visitors)::real / nullif(sum(f.visitors) + sum(f.passersby), 0))::real AS capture_rate,
       (sum(f.entries)::real / nullif(sum(f.passersby), 0))::real AS entry_rate
FROM footfall.footfall f
JOIN footfall.sites s USING (site_id)
CROSS JOIN LATERAL (
    SELECT (f.bucket_start AT TIME ZONE s.time_zone)::date AS local_day
) l
CROSS JOIN LATERAL (
    SELECT l.local_day,
           l.local_day::timestamp AT TIME ZONE s.time_zone       AS day_start,
           (l.local_day + 1)::timestamp AT TIME ZONE s.time_zone AS day_end
) d
GROUP BY f.site_id, f.zone_id, d.local_day, d.day_start, d.day_end;

-- ---------------------------------------------------------------- paths
-- Zone-to-zone moves of visitors (not passers-by, not stationary devices),
-- per local day of the move.
CREATE VIEW footfall.zone_flows AS
SELECT a.site_id,
       (b.entered_at AT TIME ZONE s.time_zone)::date AS local_day,
       a.zone_id                                     AS from_zone,
       b.zone_id                                     AS to_zone,
       count(*)::integer                             AS moves,
       count(DISTINCT a.visit_id)::integer           AS visits
FROM footfall.trajectory a
JOIN footfall.trajectory b ON b.site_id = a.site_id AND b.visit_id = a.visit_id AND b.seq = a.seq + 1
JOIN footfall.visits v ON v.site_id = a.site_id AND v.visit_id = a.visit_id AND v.is_visitor
JOIN footfall.sites s ON s.site_id = a.site_id
GROUP BY a.site_id, local_day, a.zone_id, b.zone_id;

-- ---------------------------------------------------------------- visit frequency
-- Each visitor's segment as of a moment: 'frequent' with at least
-- frequent_min_days visit days in the last segment_window_days local days,
-- 'occasional' with fewer, 'lapsed' with none in the window but earlier ones.
-- A visitor is known only within one pseudonym key period (docs/wifi.md), so
-- 'lapsed' needs a key period longer than the window.
CREATE FUNCTION footfall.visit_frequency(as_of timestamptz)
RETURNS TABLE (site_id text, key_epoch bigint, visitor_id bigint, visit_days integer,
               window_visit_days integer, first_visit_day date, last_visit_day date, segment text)
LANGUAGE sql STABLE AS $$
    WITH days AS (
        SELECT DISTINCT v.site_id, v.key_epoch, v.visitor_id,
               (v.started_at AT TIME ZONE s.time_zone)::date AS visit_day,
               (as_of AT TIME ZONE s.time_zone)::date AS today,
               s.segment_window_days, s.frequent_min_days
        FROM footfall.visits v JOIN footfall.sites s USING (site_id)
        WHERE v.is_visitor AND v.started_at <= as_of
    ), per_visitor AS (
        SELECT d.site_id, d.key_epoch, d.visitor_id,
               count(*)::integer AS visit_days,
               (count(*) FILTER (WHERE d.visit_day > d.today - d.segment_window_days))::integer AS window_visit_days,
               min(d.visit_day) AS first_visit_day,
               max(d.visit_day) AS last_visit_day,
               min(d.frequent_min_days) AS frequent_min_days
        FROM days d
        GROUP BY d.site_id, d.key_epoch, d.visitor_id
    )
    SELECT p.site_id, p.key_epoch, p.visitor_id, p.visit_days, p.window_visit_days,
           p.first_visit_day, p.last_visit_day,
           CASE WHEN p.window_visit_days >= p.frequent_min_days THEN 'frequent'
                WHEN p.window_visit_days > 0 THEN 'occasional'
                ELSE 'lapsed' END
    FROM per_visitor p
$$;

CREATE VIEW footfall.visit_frequency_segments AS
SELECT site_id, segment, count(*)::integer AS visitors
FROM footfall.visit_frequency(now())
GROUP BY site_id, segment;

-- ---------------------------------------------------------------- campaigns
-- A campaign and the baseline it is compared with, as local days (inclusive).
-- Without a baseline, it is the same number of days just before the campaign.
CREATE TABLE footfall.campaigns (
    site_id             text NOT NULL REFERENCES footfall.sites (site_id),
    campaign_id         text NOT NULL CHECK (campaign_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    name                text,
    first_day           date NOT NULL,
    last_day            date NOT NULL,
    baseline_first_day  date,
    baseline_last_day   date,
    PRIMARY KEY (site_id, campaign_id),
    CHECK (first_day <= last_day),
    CHECK ((baseline_first_day IS NULL) = (baseline_last_day IS NULL)),
    CHECK (baseline_first_day <= baseline_last_day)
);

-- Per campaign: daily means over each period and the change (campaign / baseline - 1).
CREATE VIEW footfall.campaign_comparison AS
WITH periods AS (
    SELECT c.site_id, c.campaign_id, c.name,
           c.first_day, c.last_day,
           coalesce(c.baseline_first_day, c.first_day - (c.last_day - c.first_day + 1)) AS baseline_first_day,
           coalesce(c.baseline_last_day, c.first_day - 1) AS baseline_last_day
    FROM footfall.campaigns c
), totals AS (
    SELECT p.site_id, p.campaign_id,
           d.local_day BETWEEN p.first_day AND p.last_day AS in_campaign,
           sum(d.visitors) AS visitors, sum(d.entries) AS entries, sum(d.passersby) AS passersby
    FROM periods p
    JOIN footfall.footfall_daily d
      ON d.site_id = p.site_id AND d.zone_id = '*'
     AND (d.local_day BETWEEN p.first_day AND p.last_day
          OR d.local_day BETWEEN p.baseline_first_day AND p.baseline_last_day)
    GROUP BY p.site_id, p.campaign_id, in_campaign
), per_day AS (
    SELECT p.*,
           (p.baseline_last_day - p.baseline_first_day + 1) AS baseline_days,
           (p.last_day - p.first_day + 1) AS campaign_days,
           coalesce(b.visitors, 0)::real / (p.baseline_last_day - p.baseline_first_day + 1) AS baseline_visitors_per_day,
           coalesce(c.visitors, 0)::real / (p.last_day - p.first_day + 1) AS campaign_visitors_per_day,
           coalesce(b.entries, 0)::real / (p.baseline_last_day - p.baseline_first_day + 1) AS baseline_entries_per_day,
           coalesce(c.entries, 0)::real / (p.last_day - p.first_day + 1) AS campaign_entries_per_day,
           coalesce(b.passersby, 0)::real / (p.baseline_last_day - p.baseline_first_day + 1) AS baseline_passersby_per_day,
           coalesce(c.passersby, 0)::real / (p.last_day - p.first_day + 1) AS campaign_passersby_per_day,
           (b.visitors::real / nullif(b.visitors + b.passersby, 0))::real AS baseline_capture_rate,
           (c.visitors::real / nullif(c.visitors + c.passersby, 0))::real AS campaign_capture_rate
    FROM periods p
    LEFT JOIN totals b ON b.site_id = p.site_id AND b.campaign_id = p.campaign_id AND NOT b.in_campaign
    LEFT JOIN totals c ON c.site_id = p.site_id AND c.campaign_id = p.campaign_id AND c.in_campaign
)
SELECT site_id, campaign_id, name,
       baseline_first_day, baseline_last_day, baseline_days,
       first_day, last_day, campaign_days,
       baseline_visitors_per_day::real, campaign_visitors_per_day::real,
       (campaign_visitors_per_day / nullif(baseline_visitors_per_day, 0) - 1)::real AS visitors_change,
       baseline_entries_per_day::real, campaign_entries_per_day::real,
       (campaign_entries_per_day / nullif(baseline_entries_per_day, 0) - 1)::real AS entries_change,
       baseline_passersby_per_day::real, campaign_passersby_per_day::real,
       (campaign_passersby_per_day / nullif(baseline_passersby_per_day, 0) - 1)::real AS passersby_change,
       baseline_capture_rate, campaign_capture_rate
FROM per_day;
