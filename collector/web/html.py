"""The page's HTML shell: the site picker and the empty places page.js fills.

Server-rendered so the page shows its structure (and which site) at once;
every figure comes from the JSON endpoints, drawn by static/page.js, so the
numbers are rendered in one place only.
"""

from __future__ import annotations

from html import escape
from string import Template

from collector.web.queries import RECENT_DAYS

PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>footfall — status</title>
<link rel="stylesheet" href="/static/page.css">
</head>
<body data-refresh-s="$refresh_s" data-site="$site">
<header>
  <h1>footfall</h1>
  <form method="get" class="picker">
    <label>Site <select name="site" id="site-picker">$options</select></label>
    <noscript><button type="submit">Show</button></noscript>
  </form>
  <span id="updated" class="muted">loading…</span>
</header>
<main>
<section id="fleet">
  <h2>Devices</h2>
  <p id="fleet-summary" class="muted"></p>
  <table id="fleet-table">
    <thead><tr>
      <th>Site</th><th>Device</th><th>Zones</th><th>State</th><th>Last seen</th><th>Version</th>
      <th class="n">Spool</th><th class="n">Evicted</th><th>Wi-Fi</th><th>Camera</th><th class="n">Clock skew</th><th>Problems</th>
    </tr></thead>
    <tbody></tbody>
  </table>
</section>
$site_section
</main>
<noscript><p>This page draws its figures with JavaScript; they are also at /api/fleet and /api/sites/SITE.</p></noscript>
<script src="/static/page.js" defer></script>
</body>
</html>
""")

SITE_SECTION = Template("""<section id="site">
  <h2 id="site-name">$name</h2>
  <p class="muted">Today so far against the same weekday last week, up to the same time of day.</p>
  <div id="kpis" class="kpis"></div>
  <h3>Today by hour</h3>
  <div id="hourly" class="chart"></div>
  <h3>Visitors entering each zone, by hour of day — last $days days</h3>
  <div id="heatmap"></div>
  <div class="columns">
    <div><h3>How long visitors stay — last $days days</h3><div id="dwell"></div></div>
    <div><h3>Top zone-to-zone flows — last $days days</h3><div id="flows"></div></div>
  </div>
</section>""")

NO_SITES = """<section id="site"><h2>No sites yet</h2>
<p>Add one with <code>footfall-collector site add SITE --time-zone Europe/Prague</code> and enroll its devices
(docs/operating.md).</p></section>"""


def render_page(sites: list[dict[str, str]], selected: str | None, refresh_s: float) -> str:
    options = "".join(
        f'<option value="{escape(s["site_id"])}"{" selected" if s["site_id"] == selected else ""}>'
        f'{escape(s["name"])}</option>'
        for s in sites
    )
    names = {s["site_id"]: s["name"] for s in sites}
    section = (
        SITE_SECTION.substitute(name=escape(names[selected]), days=RECENT_DAYS) if selected is not None else NO_SITES
    )
    return PAGE.substitute(
        refresh_s=f"{refresh_s:g}", site=escape(selected or ""), options=options, site_section=section
    )
