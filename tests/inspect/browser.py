"""Headless Chromium for the report test: find it, load a page offline, read back a probe.

The probe is a script injected at the top of <head> (in a copy of the report). It
records uncaught errors, failed resource loads, unhandled promise rejections and
console.error calls, then — after load, when plotly has drawn — writes them and a
summary of every plotly chart into <pre id="__probe"> as JSON, which --dump-dom returns.
Network access is cut (--host-resolver-rules), so a page that needs the internet fails.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

PROBE = """<script>
(function () {
  var errors = [];
  window.__probeErrors = errors;
  window.addEventListener('error', function (e) {
    var t = e.target;
    if (t && t !== window && (t.src || t.href)) { errors.push('resource failed: ' + (t.src || t.href)); }
    else { errors.push('error: ' + (e.message || String(e.error))); }
  }, true);
  window.addEventListener('unhandledrejection', function (e) { errors.push('rejection: ' + String(e.reason)); });
  var consoleError = console.error;
  console.error = function () {
    errors.push('console.error: ' + Array.prototype.map.call(arguments, String).join(' '));
    return consoleError.apply(console, arguments);
  };
  window.addEventListener('load', function () {
    setTimeout(function () {
      var plots = Array.prototype.map.call(document.querySelectorAll('.js-plotly-plot'), function (p) {
        return {id: p.id, traces: (p.data || []).length, drawn_traces: p.querySelectorAll('g.trace').length,
                line_paths: p.querySelectorAll('path.js-line').length, has_layout: !!p._fullLayout,
                heatmaps: p.querySelectorAll('g.hm image').length,
                width: p.getBoundingClientRect().width, height: p.getBoundingClientRect().height};
      });
      var pre = document.createElement('pre');
      pre.id = '__probe';
      pre.textContent = JSON.stringify({errors: errors, plots: plots, plotly: typeof Plotly,
                                        tables: document.querySelectorAll('table').length});
      document.body.appendChild(pre);
    }, 1000);
  });
})();
</script>"""


def find_chromium() -> str | None:
    """$INSPECT_CHROMIUM when set (a path; unusable → None), else the first browser on PATH."""
    override = os.environ.get("INSPECT_CHROMIUM")
    if override is not None:
        return override if os.access(override, os.X_OK) else None
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def chromium_command(binary: str, profile: Path, *extra: str) -> list[str]:
    return [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--mute-audio", "--hide-scrollbars", f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND", *extra]


def with_probe(page: str) -> str:
    """The page with the probe as the first thing in <head> (before plotly.js)."""
    if "<head>" not in page:
        raise ValueError("page has no <head>")
    return page.replace("<head>", "<head>" + PROBE, 1)


def probe(binary: str, page_path: Path, profile: Path, budget_ms: int = 15_000) -> dict[str, Any]:
    """Load ``page_path`` (already probed) and return the probe's JSON."""
    done = subprocess.run(chromium_command(binary, profile, f"--virtual-time-budget={budget_ms}", "--dump-dom",
                                           page_path.as_uri()), capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="__probe">(.*?)</pre>', done.stdout, re.S)
    if match is None:
        raise AssertionError(f"no probe output (exit {done.returncode}); stderr tail:\n{done.stderr[-2000:]}")
    return json.loads(html.unescape(match.group(1)))


def screenshot(binary: str, page_path: Path, png_path: Path, profile: Path, width: int, height: int) -> None:
    done = subprocess.run(chromium_command(binary, profile, f"--window-size={width},{height}",
                                           "--virtual-time-budget=15000", f"--screenshot={png_path}",
                                           page_path.as_uri()), capture_output=True, text=True, timeout=120)
    if not png_path.exists():
        raise AssertionError(f"no screenshot (exit {done.returncode}); stderr tail:\n{done.stderr[-2000:]}")
