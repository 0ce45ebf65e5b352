"""A small Chrome DevTools Protocol client for Debian's `chromium`, headless: open a page, run a
script in it, record its network requests and console errors (the page's and, with
``follow_workers``, those of its dedicated workers), take a screenshot. Used by the README's UI
screenshots (scripts/ui_screenshots.py) and the browser tests. No browser download: the `chromium`
package is installed by scripts/setup.sh."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

__all__ = ["Browser", "BrowserError"]


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or a page did not do what was asked in time."""


class Browser:
    """One headless Chromium with one page. Use as a context manager."""

    def __init__(self, width: int = 1440, height: int = 900, timeout_s: float = 30):
        exe = shutil.which("chromium")
        if exe is None:
            raise BrowserError("Debian's chromium is not installed; `make test` installs it (scripts/setup.sh).")
        self.timeout_s = timeout_s
        self.profile = Path(tempfile.mkdtemp(prefix="cdp-"))
        self.process = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             f"--window-size={width},{height}", "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = self._port()
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(p for p in pages if p.get("type") == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024)
        self._ids = itertools.count(1)
        self.events: list[dict] = []
        self._workers = False
        for domain in ("Page", "Runtime", "Network"):
            self.send(f"{domain}.enable")

    def follow_workers(self) -> None:
        """Also record what the page's dedicated workers fetch and log (Gosling's data fetchers run
        in workers): each is held at its start until its Network and Runtime events are on."""
        self._workers = True
        self.send("Target.setAutoAttach", autoAttach=True, waitForDebuggerOnStart=True, flatten=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.process.kill()
            self.process.wait()
            shutil.rmtree(self.profile, ignore_errors=True)

    def send(self, method: str, **params: Any) -> dict:
        """Call a CDP method; events that arrive meanwhile are kept in ``events``."""
        ident = next(self._ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == ident and "sessionId" not in message:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})
            self._keep(message)
        raise BrowserError(f"{method} got no answer in {self.timeout_s} s")

    def _keep(self, message: dict) -> None:
        self.events.append(message)
        if self._workers and message.get("method") == "Target.attachedToTarget":
            session = message["params"]["sessionId"]  # a worker: enable its domains, then let it run
            for method in ("Network.enable", "Runtime.enable", "Runtime.runIfWaitingForDebugger"):
                self.ws.send(json.dumps({"id": next(self._ids), "method": method, "sessionId": session}))

    def goto(self, url: str, settle_s: float = 2.0) -> None:
        """Navigate and wait for the load event, then ``settle_s`` for scripts to render."""
        seen = len(self.events)
        self.send("Page.navigate", url=url)
        self.wait_for(lambda: any(e.get("method") == "Page.loadEventFired" for e in self.events[seen:]), "load")
        self.pump(settle_s)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if it is a promise)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:60]!r} threw: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def wait_for(self, probe, what: str, timeout_s: float | None = None) -> Any:
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while time.monotonic() < deadline:
            value = probe()
            if value:
                return value
            self.pump(0.2)
        raise BrowserError(f"timed out waiting for {what}")

    def pump(self, seconds: float) -> None:
        """Collect events for a while (the page keeps working meanwhile)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self._keep(json.loads(self.ws.recv(timeout=left)))
            except TimeoutError:
                return

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def requests(self) -> list[dict]:
        """(url, status, headers) of every response the page (and its followed workers) received."""
        return [e["params"]["response"] for e in self.events if e.get("method") == "Network.responseReceived"]

    def console_errors(self) -> list[str]:
        errors = [" ".join(str(a.get("value", a.get("description", ""))) for a in e["params"].get("args", []))
                  for e in self.events
                  if e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") == "error"]
        errors += [e["params"]["exceptionDetails"].get("text", "") for e in self.events
                   if e.get("method") == "Runtime.exceptionThrown"]
        return errors

    def _port(self) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().splitlines()[0])
            if self.process.poll() is not None:
                raise BrowserError(f"chromium exited at start ({self.process.returncode})")
            time.sleep(0.1)
        raise BrowserError("chromium did not open its DevTools port")
