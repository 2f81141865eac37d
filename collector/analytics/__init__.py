"""Analytics over committed rows: visits, trajectory and footfall (docs/data-model.md).

Pure estimators with no database driver, reused by benches and tests:
``devices`` (site-wide device identity), ``presence`` (devices present),
``stationary``, ``zones``, ``sessions``, ``trajectory``, ``footfall``,
``identity``, ``spans``. The database side: ``dirty`` (the work queue the
writer fills), ``settings`` (a site's thresholds and zones), ``recompute``
(one round for one site), ``task`` (the collector's loop).
"""
