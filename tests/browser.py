"""Headless Chromium for the viewer's real-browser tests: screenshot a URL, then read its pixels.

    from browser import assert_splats_drawn, assert_splats_drawn_during, browser_test, free_port

    @browser_test
    def test_viewer_is_visible(tmp_path):
        ...  # start a LiveViewer or serve_ply and let it push
        assert_splats_drawn(viewer.url, tmp_path)

    @browser_test
    def test_a_real_run_is_visible(tmp_path):  # the viewer lives inside train(): watch it from a thread
        port = free_port()
        run = lambda: train(config_with(viewer=ViewerConfig(port=port)))
        assert_splats_drawn_during(run, f"http://127.0.0.1:{port}", tmp_path)

Chromium runs with the software-WebGL flags from LIBRARY-NOTES (SwiftShader through ANGLE) and is
driven over the DevTools protocol: the page loads, then screenshots are taken in real time until
a condition on the pixels holds. `--screenshot --virtual-time-budget` is not used because virtual
time does not wait for viser's WebAssembly sort worker: under load the splats were captured in
their unsorted first-frame order (the back of the object showing through its front).

From a shell (e.g. the screenshot in docs/): `python tests/browser.py URL OUT.png --size 1280x800 --wait 8`.

The scene is read inside `SCENE_BOX`, the middle of the window, clear of viser's floating control
panel (top right), its notifications (top left) and its logo (bottom left).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from PIL import Image
from websockets.sync.client import ClientConnection, connect

CHROMIUM = Path("/usr/bin/chromium")
WINDOW_SIZE = (800, 600)
SCENE_BOX = (0.25, 0.33, 0.57, 0.95)  # left, top, right, bottom, as fractions of the window
BACKGROUND_TOLERANCE = 24  # max |channel difference| still counted as background
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--no-proxy-server",
    "--hide-scrollbars",
    "--mute-audio",
)

Test = TypeVar("Test", bound=Callable[..., object])
Result = TypeVar("Result")
Ready = Callable[[list[np.ndarray]], bool]  # captures so far, oldest first -> done?

requires_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"needs {CHROMIUM} (run scripts/install_browser.sh)"
)


def browser_test(test: Test) -> Test:
    """Mark a test `browser` and skip it when Chromium is not installed."""
    return pytest.mark.browser(requires_chromium(test))


# -- pixels -------------------------------------------------------------------------------------


def scene_region(image: np.ndarray) -> np.ndarray:
    """The middle of the window, where the object is and no GUI is drawn."""
    height, width = image.shape[:2]
    left, top, right, bottom = SCENE_BOX
    return image[int(top * height) : int(bottom * height), int(left * width) : int(right * width)]


def background_color(image: np.ndarray) -> np.ndarray:
    """The most common colour along the window's left and bottom edges (viser's clear colour)."""
    edges = np.concatenate([image[:, 0], image[-1, :]]).reshape(-1, 3)
    colors, counts = np.unique(edges, axis=0, return_counts=True)
    return colors[np.argmax(counts)]


def near(image: np.ndarray, rgb: tuple[int, int, int] | np.ndarray, tolerance: int) -> np.ndarray:
    """[H, W] bool: pixels within `tolerance` of `rgb` in every channel."""
    return (np.abs(image.astype(np.int16) - np.asarray(rgb, dtype=np.int16)) <= tolerance).all(axis=-1)


def scene_coverage(image: np.ndarray) -> float:
    """Fraction of the scene region that is not background."""
    return float((~near(scene_region(image), background_color(image), BACKGROUND_TOLERANCE)).mean())


def color_fraction(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 60) -> float:
    """Fraction of the scene region close to `rgb`."""
    return float(near(scene_region(image), rgb, tolerance).mean())


def settled(captures: list[np.ndarray], min_coverage: float = 0.01, repeats: int = 3) -> bool:
    """The scene is drawn and the last `repeats` captures are identical (loaded, sorted, at rest)."""
    if len(captures) < repeats or scene_coverage(captures[-1]) < min_coverage:
        return False
    last = scene_region(captures[-1])
    return all(np.array_equal(scene_region(capture), last) for capture in captures[-repeats:-1])


def covers(min_coverage: float, repeats: int = 2) -> Ready:
    """Ready once the last `repeats` captures each cover at least `min_coverage` of the scene region."""
    return lambda captures: (
        len(captures) >= repeats and all(scene_coverage(c) >= min_coverage for c in captures[-repeats:])
    )


# -- the browser --------------------------------------------------------------------------------


class HeadlessChromium:
    """Headless Chromium showing `url`, driven over the DevTools protocol (a context manager).

    The URL is given at launch: navigating an open page to another site swaps its renderer and
    detaches the DevTools session.
    """

    def __init__(self, url: str, window_size: tuple[int, int] = WINDOW_SIZE, start_timeout_s: float = 120.0) -> None:
        width, height = window_size
        self._user_data_dir = Path(tempfile.mkdtemp(prefix="splatgen-chromium-"))
        command = [
            str(CHROMIUM),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={self._user_data_dir}",
            f"--window-size={width},{height}",
            "--remote-debugging-port=0",
            url,
        ]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._next_id = 0
        try:
            self._page = connect(self._page_websocket_url(start_timeout_s), max_size=None, open_timeout=start_timeout_s)
            self.call(
                "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
            )
        except BaseException:
            self.close()
            raise

    def _page_websocket_url(self, timeout_s: float) -> str:
        """Chromium writes its DevTools port to <user-data-dir>/DevToolsActivePort once it listens."""
        port_file = self._user_data_dir / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError(f"chromium did not start (exit code {self._process.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with no_proxy.open(f"http://127.0.0.1:{port}/json/list", timeout=timeout_s) as response:
            targets = json.load(response)
        return next(target["webSocketDebuggerUrl"] for target in targets if target["type"] == "page")

    def call(self, method: str, timeout_s: float = 30.0, **params: object) -> dict:
        """Send one DevTools command and return its result (events in between are skipped)."""
        self._next_id += 1
        self._page.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            message = json.loads(self._page.recv(timeout=max(deadline - time.monotonic(), 0.01)))
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> object:
        """The value of a JavaScript expression in the page."""
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def evaluate_until(
        self,
        expression: str,
        ready: Callable[[object], bool] = bool,
        timeout_s: float = 240.0,
        interval_s: float = 0.25,
    ) -> object:
        """Evaluate `expression` until `ready(value)` holds, or the hang guard `timeout_s` ends; returns the last value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if ready(value) or time.monotonic() > deadline:
                return value
            time.sleep(interval_s)

    def click_button(self, label: str) -> bool:
        """Click the first button whose text contains `label` (as a user would); False if there is none."""
        return bool(
            self.evaluate(
                f"(() => {{ const button = [...document.querySelectorAll('button')].find(b => b.textContent.includes({json.dumps(label)}));"
                " if (button) button.click(); return Boolean(button); })()"
            )
        )

    def has_text(self, text: str) -> bool:
        return bool(self.evaluate(f"document.body.innerText.includes({json.dumps(text)})"))

    def capture(self) -> np.ndarray:
        """A screenshot of the page as [H, W, 3] uint8."""
        png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        with Image.open(io.BytesIO(png)) as image:
            return np.asarray(image.convert("RGB"))

    def close(self) -> None:
        page: ClientConnection | None = getattr(self, "_page", None)
        if page is not None:
            page.close()
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for _ in range(20):  # Chromium's helper processes may still be writing their last files
            shutil.rmtree(self._user_data_dir, ignore_errors=True)
            if not self._user_data_dir.exists():
                break
            time.sleep(0.1)

    def __enter__(self) -> HeadlessChromium:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def capture_when(
    browser: HeadlessChromium, ready: Ready = settled, timeout_s: float = 120.0, interval_s: float = 0.5
) -> np.ndarray:
    """Capture every `interval_s` until `ready(captures)` or the timeout; returns the last capture."""
    deadline = time.monotonic() + timeout_s
    captures: list[np.ndarray] = []
    while True:
        captures = [*captures[-4:], browser.capture()]
        if ready(captures) or time.monotonic() > deadline:
            return captures[-1]
        time.sleep(interval_s)


def screenshot(
    url: str,
    png_path: Path,
    ready: Ready = settled,
    window_size: tuple[int, int] = WINDOW_SIZE,
    timeout_s: float = 120.0,
) -> np.ndarray:
    """Open `url` in headless Chromium, capture once `ready` holds (or at the timeout), save the PNG, return its pixels."""
    with HeadlessChromium(url, window_size) as browser:
        image = capture_when(browser, ready, timeout_s)
    Image.fromarray(image).save(png_path)
    return image


def assert_splats_drawn(url: str, tmp_path: Path, min_coverage: float = 0.02, name: str = "viewer.png") -> np.ndarray:
    """Screenshot `url` and fail unless something covers at least `min_coverage` of the scene region."""
    png_path = Path(tmp_path) / name
    image = screenshot(url, png_path, ready=covers(min_coverage))
    coverage = scene_coverage(image)
    assert coverage >= min_coverage, f"only {coverage:.2%} of the scene region is drawn (see {png_path})"
    return image


def free_port() -> int:
    """A TCP port nobody listens on right now (for a viewer started elsewhere, e.g. inside train())."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_served(url: str, timeout_s: float) -> bool:
    """Poll `url` until it answers HTTP 200; False on timeout."""
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with no_proxy.open(url, timeout=2.0) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def assert_splats_drawn_during(
    run: Callable[[threading.Event], Result],
    url: str,
    tmp_path: Path,
    min_coverage: float = 0.02,
    name: str = "run.png",
    timeout_s: float = 240.0,
) -> Result:
    """Call `run(seen)` (say, a short training run with its viewer on `url`) while a thread screenshots the page.

    The thread waits for the viewer to answer, then captures until splats cover `min_coverage` of
    the scene region, and sets `seen`. The run keeps its viewer up until `seen` is set (a condition,
    not a duration, so a loaded machine only makes it slower): see `stop_when` and `hold_last_step`.
    Everything waits at most `timeout_s`. Returns `run`'s result.
    """
    png_path = Path(tmp_path) / name
    captured: dict[str, object] = {}
    run_finished = threading.Event()
    seen = threading.Event()

    def watch() -> None:
        try:
            if wait_until_served(url, timeout_s):
                ready = covers(min_coverage)
                captured["image"] = screenshot(
                    url, png_path, ready=lambda captures: ready(captures) or run_finished.is_set(), timeout_s=timeout_s
                )
        except Exception as error:
            captured["error"] = error
        finally:
            seen.set()

    watcher = threading.Thread(target=watch, name="browser-watcher", daemon=True)
    watcher.start()
    try:
        result = run(seen)
    finally:
        run_finished.set()
        watcher.join(timeout_s)
    assert "error" not in captured, f"the browser failed: {captured['error']!r}"
    assert "image" in captured, f"the viewer at {url} never answered while the run lasted"
    coverage = scene_coverage(captured["image"])
    assert coverage >= min_coverage, (
        f"only {coverage:.2%} of the scene region was drawn during the run (see {png_path})"
    )
    return result


def hold_last_step(seen: threading.Event, steps: int, timeout_s: float = 240.0) -> Callable[[int], None]:
    """A training `on_step` hook that keeps the run (and its viewer) at its last step until `seen`."""

    def on_step(step: int) -> None:
        if step >= steps - 1:
            seen.wait(timeout_s)

    return on_step


def main() -> None:
    """Command line: capture URL to OUT.png after waiting a fixed number of seconds."""
    parser = argparse.ArgumentParser(description="Screenshot a page (e.g. a splatgen viewer) with headless Chromium.")
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", default="1280x800", help="window size, WIDTHxHEIGHT")
    parser.add_argument("--wait", type=float, default=8.0, help="seconds to let the page load and draw")
    args = parser.parse_args()
    width, height = (int(part) for part in args.size.split("x"))
    with HeadlessChromium(args.url, (width, height)) as browser:
        time.sleep(args.wait)
        Image.fromarray(browser.capture()).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
