"""A real cluster and headless Chromium (Debian's chromium + chromium-driver, installed by
scripts/setup-browser.sh) driven by Selenium. Nothing is downloaded: the driver is the
chromedriver on PATH. Screenshots of every step go to artifacts/browser/ (printed)."""
import os
import shutil
import time
from pathlib import Path

import pytest

from nodes.launcher import LocalCluster
from tests.integration.conftest import FAST

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("REPLOG_ARTIFACTS", ROOT / "artifacts")) / "browser"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def artifacts():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser screenshots: {ARTIFACTS}")
    return ARTIFACTS


def chrome(*extra_args: str):
    """Headless Chromium with the driver on PATH (skips when either is missing)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    if not _chromium() or not shutil.which("chromedriver"):
        pytest.skip("chromium and chromedriver not installed (run scripts/setup-browser.sh)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = _chromium()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--disable-extensions", "--no-first-run",
                *extra_args):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    d.set_page_load_timeout(30)
    return d


@pytest.fixture(scope="module")
def driver():
    d = chrome()
    yield d
    d.quit()


@pytest.fixture(scope="module")
def dash_cluster(tmp_path_factory):
    """Name server, master, s1, s2 with the integration tests' short health thresholds."""
    c = LocalCluster(tmp_path_factory.mktemp("browser-logs"))
    c.start_nameserver()
    for name in ("s1", "s2"):
        c.start_secondary(name)
    c.start_master(["s1", "s2"], **FAST)
    yield c
    c.close()


class Shots:
    """Numbered screenshots of one test's steps."""

    def __init__(self, driver, folder: Path, test: str) -> None:
        self.driver, self.folder, self.test, self.n = driver, folder, test, 0

    def __call__(self, step: str) -> Path:
        self.n += 1
        path = self.folder / f"{self.test}-{self.n:02d}-{step}.png"
        self.driver.save_screenshot(str(path))
        return path


@pytest.fixture
def shot(driver, artifacts, request):
    return Shots(driver, artifacts, request.node.name.removeprefix("test_"))


def now() -> float:
    return time.monotonic()
