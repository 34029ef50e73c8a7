"""A real browser for the tests: Debian's headless Chromium, driven by Selenium through Debian's chromedriver.

The product's web services listen in the testbed's server namespace, so the browser must run there too.
Every call of :class:`Browser` runs on one thread of its own that entered that network namespace
(``setns``, which Linux applies to the calling thread only); chromedriver and Chromium, started from that
thread, are born in the namespace, and Selenium's own connections to chromedriver are made from it. The
test process itself stays in the host's namespace.
"""

from __future__ import annotations

import ctypes
import os
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

# the programs the browser tests run, and the Debian package of each (checked by tests/test_programs.py)
CHROMIUM = "chromium"
CHROMEDRIVER = "chromedriver"
PROGRAMS = {CHROMIUM: "chromium", CHROMEDRIVER: "chromium-driver"}
CLONE_NEWNET = 0x40000000
CALL_TIMEOUT = 30.0  # seconds for any one call into the browser
T = TypeVar("T")


def enter_network_namespace(name: str) -> None:
    """Move the calling thread into the named network namespace (``ip netns`` keeps it in /run/netns)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {name}: {os.strerror(errno)}")
    finally:
        os.close(fd)


def start_chromium(binary: str, driver: str) -> webdriver.Chrome:
    """Headless Chromium under chromedriver. As root it must run without its sandbox; /dev/shm may be small
    in a container, and nothing here draws with a GPU."""
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,800", "--hide-scrollbars"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(driver))


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG file, from its header (ValueError when it is no PNG)."""
    header = path.read_bytes()[:24]
    if header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG file")
    width, height = struct.unpack(">II", header[16:24])
    return width, height


class Browser:
    """One headless Chromium in a network namespace; its calls are made on the thread that lives there."""

    def __init__(self, namespace: str, binary: str, driver: str) -> None:
        self._thread = ThreadPoolExecutor(1, initializer=enter_network_namespace, initargs=(namespace,))
        try:
            self.driver = self._thread.submit(start_chromium, binary, driver).result(timeout=CALL_TIMEOUT)
        except BaseException:
            self._thread.shutdown(wait=False, cancel_futures=True)
            raise

    def call(self, action: Callable[[webdriver.Chrome], T]) -> T:
        """``action(driver)`` on the browser's thread; its result."""
        return self._thread.submit(action, self.driver).result(timeout=CALL_TIMEOUT)

    def open(self, url: str) -> None:
        """Load ``url`` and wait for its document."""
        self.call(lambda driver: driver.get(url))

    def script(self, source: str, *args: Any) -> Any:
        """Run JavaScript in the page (``return …`` gives a value back)."""
        return self.call(lambda driver: driver.execute_script(source, *args))

    def until(self, source: str, what: str, timeout: float = 15.0, interval: float = 0.1) -> Any:
        """Run ``source`` until it returns something true; that value (AssertionError naming ``what`` and
        the last value at the deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.script(source)
            if value:
                return value
            assert time.monotonic() < deadline, f"{what} not seen in the page within {timeout} s: {value!r}"
            time.sleep(interval)

    def screen(self, width: int, height: int, scale: float = 1.0, mobile: bool = False) -> None:
        """Emulate a screen of ``width`` x ``height`` CSS pixels: a desktop's, or a phone's with ``mobile``
        (the page's viewport meta tag then applies). Screenshots are ``scale`` times that size."""
        metrics = {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile}
        self.call(lambda driver: driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics))

    def screenshot(self, path: Path) -> Path:
        """Save what the browser shows as a PNG file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        saved = self.call(lambda driver: driver.save_screenshot(str(path)))
        assert saved, f"the browser could not save {path}"
        return path

    def close(self) -> None:
        """Quit Chromium and chromedriver, and end the thread."""
        try:
            self.call(lambda driver: driver.quit())
        finally:
            self._thread.shutdown(wait=True)
