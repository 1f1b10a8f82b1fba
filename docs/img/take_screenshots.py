"""Retake the UI screenshots of docs/production.md from a running webserver (headless Chromium).

    DAGSTER_HOME=/tmp/shots ARXIV_PROFILE=smoke make run   # the graph, as make run materializes it
    DAGSTER_HOME=/tmp/shots .venv/bin/dagster-webserver -w workspace.yaml -p 3123 &
    .venv/bin/python docs/img/take_screenshots.py http://127.0.0.1:3123

Needs Debian's `chromium`. Drives it over the DevTools protocol (websocket-client, a dependency of the
kubernetes client) because two things need a script: dismissing the community pop-up (the UI's own
`setNuxSeen` mutation) and expanding the asset groups (the UI's Alt+E shortcut).
"""

import base64
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import websocket

OUT = Path(__file__).parent
PORT = 9333
EXPAND_GROUPS = "window.dispatchEvent(new KeyboardEvent('keydown', {code: 'KeyE', key: 'e', altKey: true}))"


class Page:
    def __init__(self, ws_url: str) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=60)
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                return message.get("result", {})

    def drag(self, x1: float, y1: float, x2: float, y2: float) -> None:
        self.call("Input.dispatchMouseEvent", type="mousePressed", x=x1, y=y1, button="left", clickCount=1)
        for i in range(1, 11):
            self.call("Input.dispatchMouseEvent", type="mouseMoved", button="left", buttons=1,
                      x=x1 + (x2 - x1) * i / 10, y=y1 + (y2 - y1) * i / 10)
        self.call("Input.dispatchMouseEvent", type="mouseReleased", x=x2, y=y2, button="left", clickCount=1)

    def shoot(self, url: str, target: Path, *, expand: bool = False, crop_height: int | None = None) -> None:
        self.call("Page.navigate", url=url)
        time.sleep(10)
        if expand:
            self.call("Runtime.evaluate", expression=EXPAND_GROUPS)
            time.sleep(3)
            self.drag(700, 900, 690, 975)  # pan the graph so the top group is not cut off
            time.sleep(2)
        clip = {"clip": {"x": 0, "y": 0, "width": 1600, "height": crop_height, "scale": 1}} if crop_height else {}
        target.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png", **clip)["data"]))
        print(target, target.stat().st_size // 1024, "KiB")


def main(base_url: str) -> None:
    request = urllib.request.Request(f"{base_url}/graphql", data=json.dumps({"query": "mutation { setNuxSeen }"})
                                     .encode(), headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).read()
    chromium = subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         f"--remote-debugging-port={PORT}", "--remote-allow-origins=*", "--window-size=1600,1000", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            try:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{PORT}/json", timeout=5))
                break
            except OSError:
                time.sleep(0.2)
        page = Page(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
        page.call("Emulation.setDeviceMetricsOverride", width=1600, height=1000, deviceScaleFactor=1, mobile=False)
        page.shoot(f"{base_url}/asset-groups", OUT / "asset-graph.png", expand=True)
        page.shoot(f"{base_url}/assets/ir_metrics", OUT / "asset-ir-metrics.png")
        page.shoot(f"{base_url}/automation", OUT / "automation.png", crop_height=320)
    finally:
        chromium.terminate()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:3123")
