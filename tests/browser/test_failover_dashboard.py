"""The dashboard of a failover cluster in a real browser: opened at any node (a secondary
sends the browser to the master), it shows the epoch and who is master, and each election
in its event feed; after kill -9 of the master, opened again at a surviving node, the new
master and its epoch."""
import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from nodes.launcher import LocalCluster
from tests.integration.conftest import start_cluster
from tests.integration.failover_support import (FAILOVER_FLAGS, NAMES, failover_state,
                                                wait_master)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _until(driver, predicate, what, timeout=20):
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(NoSuchElementException,
                                             StaleElementReferenceException)
                         ).until(lambda _: predicate(), message=f"waiting for {what}")


def _shows(driver, master, epoch) -> bool:
    line = driver.find_element(By.ID, "epoch-line")
    return (line.is_displayed() and driver.find_element(By.ID, "epoch").text == str(epoch)
            and driver.find_element(By.ID, "master-name").text == master.name)


def _elections(driver) -> list[str]:
    return [li.text for li in
            driver.find_elements(By.CSS_SELECTOR, '#events li[data-kind="election"]')]


def test_the_dashboard_shows_the_epoch_the_master_and_each_election(driver, tmp_path, shot):
    with LocalCluster(tmp_path / "logs") as c:
        c.start_nameserver(failover=True)
        master, secs = start_cluster(c, failover=True, master_flags=dict(FAILOVER_FLAGS),
                                     secondary_flags={n: dict(FAILOVER_FLAGS) for n in NAMES})
        procs = [master, *secs]
        first = wait_master(procs)
        epoch = failover_state(first)["epoch"]
        other = next(p for p in procs if p is not first)
        driver.get(other.url + "/")              # a secondary answers 307: to the master
        _until(driver, lambda: driver.current_url.startswith(first.url),
               "the browser sent to the master")
        _until(driver, lambda: _shows(driver, first, epoch), f"epoch {epoch}, {first.name}")
        _until(driver, lambda: any(f"{first.name} is master of epoch {epoch}" in t
                                   for t in _elections(driver)), "the election in the feed")
        shot("first-master")

        first.kill()
        live = [p for p in procs if p is not first]
        new = wait_master(live, other_than=first, above_epoch=epoch)
        new_epoch = failover_state(new)["epoch"]
        driver.get(next(p for p in live if p is not new).url + "/")
        _until(driver, lambda: _shows(driver, new, new_epoch), f"epoch {new_epoch}, {new.name}")
        _until(driver, lambda: any(f"{new.name} is master of epoch {new_epoch}" in t
                                   for t in _elections(driver)), "the new election in the feed")
        shot("new-master")
