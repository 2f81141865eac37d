"""HTTP for operators and orchestrators: liveness, readiness and Prometheus metrics.

Handlers only translate the one :class:`~collector.state.CollectorState` the
service keeps (stored on the app under :data:`STATE_KEY`) into HTTP. These
routes stay open (no credentials) so probes and scrapers need no secret.
"""

from __future__ import annotations

import time

from aiohttp import web

from collector.state import CollectorState, Histogram

STATE_KEY = web.AppKey("state", CollectorState)
PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def add_probe_routes(app: web.Application, state: CollectorState) -> None:
    app[STATE_KEY] = state
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


def _connections(state: CollectorState) -> dict[str, str]:
    return {"broker": state.broker.value, "database": state.database.value}


async def healthz(request: web.Request) -> web.Response:
    """200 while the process serves requests, with the connection states for humans."""
    state = request.app[STATE_KEY]
    uptime_s = round(time.time() - state.started_at_s, 1)
    return web.json_response({"status": "ok", "uptime_s": uptime_s, **_connections(state)})


async def readyz(request: web.Request) -> web.Response:
    """200 only when both the broker and the database are connected, else 503."""
    state = request.app[STATE_KEY]
    body = {"status": "ready" if state.ready else "not ready", **_connections(state)}
    return web.json_response(body, status=200 if state.ready else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=render_metrics(request.app[STATE_KEY]), content_type="text/plain", charset="utf-8")


def render_metrics(state: CollectorState) -> str:
    """Prometheus text exposition format 0.0.4."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP footfall_collector_{name} {help_text}")
        lines.append(f"# TYPE footfall_collector_{name} {kind}")
        lines.extend(f"footfall_collector_{name}{labels} {_number(value)}" for labels, value in samples)

    metric("messages_received_total", "counter", "MQTT messages received.", [("", state.messages_received)])
    metric("batches_committed_total", "counter", "New batches committed.", [("", state.batches_committed)])
    metric(
        "rows_committed_total",
        "counter",
        "Event rows committed, by table.",
        [(f'{{table="{table}"}}', count) for table, count in sorted(state.rows_committed.items())],
    )
    metric(
        "rejected_total",
        "counter",
        "Messages stored in ingest_rejects, by reason.",
        [(f'{{reason="{reason}"}}', count) for reason, count in sorted(state.rejected.items())],
    )
    metric("duplicates_total", "counter", "Redelivered batches already committed.", [("", state.duplicates)])
    metric("status_updates_total", "counter", "Device status messages applied.", [("", state.status_updates)])
    metric("db_errors_total", "counter", "Failed commit attempts (retried).", [("", state.db_errors)])
    metric("commit_groups_total", "counter", "Committed transactions.", [("", state.commit_groups)])
    metric("commit_seconds_total", "counter", "Time spent in commits.", [("", state.commit_seconds_total)])
    metric("pending_messages", "gauge", "Ack lag: messages received, not yet acked.", [("", state.pending_messages)])
    metric(
        "oldest_pending_seconds",
        "gauge",
        "Ack lag: age of the oldest message received and not yet acked.",
        [("", state.oldest_pending_age_s())],
    )
    lines.extend(
        _histogram(
            "batch_latency_seconds",
            "Device created_at to commit of new batches (includes device clock skew).",
            state.batch_latency_s,
        )
    )
    analytics = state.analytics
    metric("analytics_rounds_total", "counter", "Analytics rounds run (one site each).", [("", analytics.rounds)])
    metric("analytics_failures_total", "counter", "Analytics rounds that failed (retried later).", [("", analytics.failures)])
    metric("analytics_seconds_total", "counter", "Time spent in analytics rounds.", [("", analytics.seconds_total)])
    metric("analytics_backlog_buckets", "gauge", "5-minute buckets queued for analytics.", [("", analytics.backlog_buckets)])
    metric(
        "analytics_backlog_oldest_seconds",
        "gauge",
        "How long the oldest bucket queued for analytics has waited.",
        [("", analytics.backlog_oldest_s)],
    )
    if state.db_pool is not None:
        pool = state.db_pool
        metric("db_pool_connections", "gauge", "Open database connections.", [("", pool.get_size())])
        metric("db_pool_idle_connections", "gauge", "Open connections not in use.", [("", pool.get_idle_size())])
        metric("db_pool_max_connections", "gauge", "Pool size limit (database.pool_size).", [("", pool.get_max_size())])
    for name, connection in _connections(state).items():
        metric(f"{name}_connected", "gauge", f"1 when the {name} is connected.", [("", connection == "connected")])
    return "\n".join(lines) + "\n"


def _histogram(name: str, help_text: str, histogram: Histogram) -> list[str]:
    full = f"footfall_collector_{name}"
    lines = [f"# HELP {full} {help_text}", f"# TYPE {full} histogram"]
    for bound, count in histogram.cumulative():
        le = "+Inf" if bound == float("inf") else f"{bound:g}"
        lines.append(f'{full}_bucket{{le="{le}"}} {count}')
    lines.append(f"{full}_sum {_number(histogram.sum)}")
    lines.append(f"{full}_count {histogram.count}")
    return lines


def _number(value: float) -> str:
    """Counters print exactly (``:g`` would turn 1234567 into 1.23457e+06)."""
    return str(int(value)) if isinstance(value, int) else repr(float(value))
