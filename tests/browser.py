"""Headless Chromium for tests, driven over the DevTools protocol on a pipe (no extra package).

``--remote-debugging-pipe`` makes Chromium read NUL-terminated JSON commands on fd 3 and write its
answers and events on fd 4.  ``load_page`` opens one URL, waits for the load event, and returns what a
person would have seen: the console errors (exceptions, ``console.error``, failed loads, CSP
violations), a PNG screenshot and the values of the page's ``data-key`` elements as rendered.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

CANDIDATES = ("chromium", "chromium-browser")


def chromium_binary() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageLoad:
    errors: list[str] = field(default_factory=list)
    screenshot_png: bytes = b""
    data_keys: dict[str, str] = field(default_factory=dict)
    title: str = ""


class _Pipe:
    def __init__(self, write_fd: int, read_fd: int, timeout_s: float):
        self.write_fd, self.read_fd = write_fd, read_fd
        self.deadline = time.monotonic() + timeout_s
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str) -> dict:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = self._read()
            if event.get("method") == method:
                return event
            self.events.append(event)

    def _read(self) -> dict:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 16)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)


_DATA_KEYS_JS = (
    "JSON.stringify(Object.fromEntries([...document.querySelectorAll('[data-key]')]"
    ".map(e => [e.dataset.key, e.textContent])))"
)


def _stderr():
    return (
        open(os.environ["REXDRUG_CHROMIUM_LOG"], "ab")
        if os.environ.get("REXDRUG_CHROMIUM_LOG")
        else subprocess.DEVNULL
    )


def load_page(url: str, *, width: int = 1280, height: int = 2000, timeout_s: float = 60) -> PageLoad:
    binary = chromium_binary()
    if binary is None:
        raise FileNotFoundError("no chromium binary on PATH")
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="rexdrug-chromium-")
    args = [
        binary,
        "--headless",
        "--remote-debugging-pipe",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "about:blank",
    ]
    # the child's fds 3 and 4 are the protocol pipe: a shell puts them in place and execs Chromium
    wrapper = [
        "bash",
        "-c",
        f'exec "$@" 3<&{to_browser_r} 4>&{from_browser_w}',
        "bash",
        *args,
    ]  # dash: fds < 10
    proc = subprocess.Popen(
        wrapper,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=_stderr(),
        pass_fds=(to_browser_r, from_browser_w),
    )
    os.close(to_browser_r)
    os.close(from_browser_w)
    pipe = _Pipe(to_browser_w, from_browser_r, timeout_s)
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            pipe.send(f"{domain}.enable", session=session)
        pipe.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        pipe.send("Page.navigate", {"url": url}, session=session)
        pipe.wait_event("Page.loadEventFired")
        result = PageLoad()
        keys = pipe.send(
            "Runtime.evaluate", {"expression": _DATA_KEYS_JS, "returnByValue": True}, session=session
        )
        result.data_keys = json.loads(keys["result"]["value"])
        title = pipe.send(
            "Runtime.evaluate", {"expression": "document.title", "returnByValue": True}, session=session
        )
        result.title = title["result"]["value"]
        shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session=session)
        result.screenshot_png = base64.b64decode(shot["data"])
        for event in pipe.events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.exceptionThrown":
                result.errors.append(json.dumps(params.get("exceptionDetails", {}))[:500])
            elif event.get("method") == "Runtime.consoleAPICalled" and params.get("type") in (
                "error",
                "assert",
            ):
                result.errors.append(json.dumps(params.get("args", []))[:500])
            elif event.get("method") == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                result.errors.append(params["entry"].get("text", "")[:500])
        try:
            pipe.send("Browser.close")
        except (RuntimeError, TimeoutError):
            pass
        return result
    finally:
        os.close(to_browser_w)
        os.close(from_browser_r)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def pixel_stddev(png: bytes) -> float:
    """Standard deviation of the screenshot's grey levels: about 0 for a blank page."""
    import io

    from PIL import Image, ImageStat

    return ImageStat.Stat(Image.open(io.BytesIO(png)).convert("L")).stddev[0]
