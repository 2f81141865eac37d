-- Analytics tables (issue 6): visits, trajectory, footfall, their views and the
-- dirty-range queue the collector's analytics task works from. Claimed now so
-- that other migrations take 005 and up; the statements follow in this file
-- before it is first released.
SELECT 1;
