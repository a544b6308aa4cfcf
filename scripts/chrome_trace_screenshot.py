r"""Screenshot a Chrome trace opened in catapult's trace viewer (what docs/img/chrome_trace.png is).

The viewer is the HTML page that catapult's ``tracing/bin/trace2html`` writes for a trace (it
embeds the legacy ``chrome://tracing`` viewer and the trace). This script opens that page in
headless Chromium, waits until the viewer has imported the trace, zooms the viewer's own
viewport to a time window, optionally clicks once (a slice, to show its arguments in the
viewer's bottom panel) and saves a PNG. It only drives the browser over the DevTools protocol
on loopback; it needs ``pip install websocket-client`` and a Chromium or Chrome binary.

    python scripts/chrome_trace_screenshot.py run.html docs/img/chrome_trace.png \
        --window-ms 5950 6300 --click 900,278 --crop-height 820

Times are the viewer's: catapult shifts the trace so that its first event is at 0 ms.
"""

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import NoReturn

WAIT_S = 60.0


def fail(msg: str) -> NoReturn:
    print(f"chrome_trace_screenshot: {msg}", file=sys.stderr)
    raise SystemExit(2)


class DevTools:
    """The smallest DevTools-protocol client: one page, one command at a time."""

    def __init__(self, ws_url: str):
        import websocket  # websocket-client

        self.ws = websocket.create_connection(ws_url, timeout=WAIT_S)
        self.next_id = 0

    def cmd(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    fail(f"{method} failed: {msg['error']}")
                return msg["result"]

    def js(self, expr: str):
        r = self.cmd("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            fail(f"script error in the page: {r['exceptionDetails'].get('text')}")
        return r["result"].get("value")


def page_ws_url(profile: str, deadline: float) -> str:
    port_file = os.path.join(profile, "DevToolsActivePort")
    while time.monotonic() < deadline:
        if os.path.exists(port_file):
            with open(port_file) as f:
                port = f.read().split()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json") as r:
                tabs = json.load(r)
            pages = [t for t in tabs if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.2)
    fail("Chromium did not open its DevTools port")


VIEWER_READY = """(() => {
  const v = document.querySelector('tr-ui-timeline-view');
  return !!(v && v.model && v.trackView && v.trackView.viewport);
})()"""

ZOOM = """(() => {
  const tv = document.querySelector('tr-ui-timeline-view').trackView;
  const dt = tv.viewport.currentDisplayTransform.clone();
  dt.xSetWorldBounds(%r, %r, tv.viewWidth_);
  tv.viewport.setDisplayTransformImmediately(dt);
  return true;
})()"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html", help="page written by catapult's tracing/bin/trace2html")
    ap.add_argument("png", help="output PNG")
    ap.add_argument("--window-ms", nargs=2, type=float, metavar=("T0", "T1"),
                    help="zoom to this time window (viewer time, ms); default: whole trace")
    ap.add_argument("--click", metavar="X,Y", help="click once at this page position (CSS px)")
    ap.add_argument("--size", default="1600x900", metavar="WxH", help="window size (CSS px)")
    ap.add_argument("--crop-height", type=int, metavar="H", help="keep only the top H px")
    ap.add_argument("--chromium", default=None, help="browser binary (default: chromium, "
                    "chromium-browser or google-chrome on PATH)")
    a = ap.parse_args()

    if not os.path.isfile(a.html):
        fail(f"no such file: {a.html}")
    try:
        width, height = (int(v) for v in a.size.lower().split("x"))
    except ValueError:
        fail(f"--size must be WxH, got {a.size!r}")
    click = None
    if a.click:
        try:
            click = tuple(float(v) for v in a.click.split(","))
            assert len(click) == 2
        except (ValueError, AssertionError):
            fail(f"--click must be X,Y, got {a.click!r}")
    if a.window_ms and not a.window_ms[0] < a.window_ms[1]:
        fail(f"--window-ms needs T0 < T1, got {a.window_ms[0]} {a.window_ms[1]}")
    if a.crop_height is not None and not 0 < a.crop_height <= height:
        fail(f"--crop-height must be in 1..{height}, got {a.crop_height}")
    names = [a.chromium] if a.chromium else ["chromium", "chromium-browser", "google-chrome"]
    browser = next((shutil.which(n) for n in names if shutil.which(n)), None)
    if browser is None:
        fail(f"no browser found (tried {', '.join(names)}); pass --chromium PATH")
    try:
        import websocket  # noqa: F401
    except ImportError:
        fail("needs websocket-client: pip install websocket-client")

    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + WAIT_S
            dev = DevTools(page_ws_url(profile, deadline))
            dev.cmd("Page.enable")
            dev.cmd("Emulation.setDeviceMetricsOverride", width=width, height=height,
                    deviceScaleFactor=1, mobile=False)
            dev.cmd("Page.navigate", url="file://" + os.path.abspath(a.html))
            while not dev.js(VIEWER_READY):
                if time.monotonic() > deadline:
                    fail(f"the trace viewer did not finish loading {a.html} in {WAIT_S:.0f} s "
                         "(is it a trace2html page?)")
                time.sleep(0.5)
            time.sleep(1.0)  # let the first frame draw
            if a.window_ms:
                dev.js(ZOOM % tuple(a.window_ms))
                time.sleep(1.0)
            if click:
                for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
                    dev.cmd("Input.dispatchMouseEvent", type=kind, x=click[0], y=click[1],
                            button="left", clickCount=1)
                    time.sleep(0.1)
                time.sleep(1.0)
            shot = {"format": "png"}
            if a.crop_height:
                shot["clip"] = {"x": 0, "y": 0, "width": width, "height": a.crop_height,
                                "scale": 1}
            data = base64.b64decode(dev.cmd("Page.captureScreenshot", **shot)["data"])
        finally:
            proc.terminate()
            proc.wait()
    with open(a.png, "wb") as f:
        f.write(data)
    print(f"wrote {a.png} ({len(data) // 1024} KiB)")


if __name__ == "__main__":
    main()
