-- The edge links the rotating randomised MACs of one phone into a cluster and
-- sends the cluster id (the pseudonym of the cluster's first MAC) with every
-- sighting, so the cloud counts devices rather than MACs. Rows written before
-- this column existed are their own cluster.
ALTER TABLE footfall.wifi_sightings ADD COLUMN cluster bigint;
UPDATE footfall.wifi_sightings SET cluster = pseudonym WHERE cluster IS NULL;
ALTER TABLE footfall.wifi_sightings ALTER COLUMN cluster SET NOT NULL;
COMMENT ON COLUMN footfall.wifi_sightings.cluster IS
    'physical device: pseudonym of the first MAC the edge linker attributed to it (same key_epoch)';
