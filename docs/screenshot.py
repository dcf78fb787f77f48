"""
Retake ``docs/dashboard.png``, the README's picture of the dashboard.

It runs ``ringfence demo --web`` (the outage scenario), opens the dashboard in Debian's headless
chromium (selenium), waits until the breaker is open (or half-open, with ``--state half_open``)
and the page has shown a few transitions, saves the page, and makes the PNG small (a
64-colour palette; the page is flat colours and text).

    .venv/bin/python docs/screenshot.py                # writes docs/dashboard.png
    .venv/bin/python docs/screenshot.py --state half_open --out /tmp/half_open.png

Needs ``apt-get install chromium chromium-driver`` and ``pip install 'ringfence[demo,web]'
selenium``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CHROMEDRIVER = "/usr/bin/chromedriver"
URL_LINE = re.compile(r"dashboard: (http://127\.0\.0\.1:\d+/) ")
#: The window the page is drawn in (CSS pixels): the width of a README column at 2x.
WIDTH, HEIGHT = 1100, 860


def _browser(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium")
    if binary is None or not os.access(CHROMEDRIVER, os.X_OK):
        sys.exit(
            "needs Debian's chromium and chromedriver: apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        f"--window-size={WIDTH},{HEIGHT}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _shown(driver: Any, state: str) -> bool:
    """The card shows *state*, a countdown or a pause, and at least two transitions."""
    from selenium.webdriver.common.by import By

    for card in driver.find_elements(By.CSS_SELECTOR, "article.card"):
        transitions = card.find_elements(By.CSS_SELECTOR, "ol.transitions li:not(.empty)")
        if card.get_attribute("data-state") == state and len(transitions) >= 2:
            return True
    return False


def _small(path: Path) -> None:
    """Rewrite *path* as a 64-colour palette PNG."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "dashboard.png")
    parser.add_argument("--state", choices=("open", "half_open"), default="open")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--duration", type=float, default=40.0, help="the demo's (seconds)")
    args = parser.parse_args()

    from selenium.webdriver.support.ui import WebDriverWait

    with tempfile.TemporaryDirectory() as scratch:
        demo = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "supervisor",
                "demo",
                "--web",
                "--web-port",
                "0",
                "--no-live",
                "--scenario",
                "outage",
                "--duration",
                str(args.duration),
                "--seed",
                str(args.seed),
                "--plot",
                str(Path(scratch) / "timeline.png"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        driver = None
        try:
            assert demo.stdout is not None
            first = demo.stdout.readline()
            match = URL_LINE.match(first)
            if match is None:
                sys.exit(f"the demo did not print the dashboard's URL first: {first!r}")
            driver = _browser(Path(scratch) / "profile")
            driver.get(match[1])
            WebDriverWait(driver, args.duration, poll_frequency=0.1).until(
                lambda d: _shown(d, args.state),
                message=f"the breaker was not {args.state} during the demo",
            )
            args.out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.out))
        finally:
            if driver is not None:
                driver.quit()
            demo.terminate()
            demo.communicate(timeout=30)
    _small(args.out)
    print(f"{args.out}: {args.out.stat().st_size // 1024} KB")  # noqa: T201 - a script
    return 0


if __name__ == "__main__":
    sys.exit(main())
