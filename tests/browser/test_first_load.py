"""The first look: the dashboard opened right after the cluster starts (the master has read
no secondary's tail yet) draws every node at once and shows no error at any moment."""
import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from nodes.launcher import LocalCluster
from tests.integration.conftest import FAST

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Installed before the page's own script runs: records every text the connection line
# (#conn) takes, with the node cards drawn at that moment, so a message shown for half a
# second between two polls is not missed.
RECORD_CONN = """
window.__conn = [];
new MutationObserver(() => {
  const el = document.getElementById("conn");
  const last = window.__conn[window.__conn.length - 1];
  if (el && el.textContent && (!last || last.text !== el.textContent)) {
    window.__conn.push({ text: el.textContent, lost: el.classList.contains("lost"),
      cards: [...document.querySelectorAll("article.node")].map((a) => a.dataset.name) });
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


def test_the_first_load_after_a_start_draws_every_node_and_no_error(driver, tmp_path, shot):
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_CONN})
    with LocalCluster(tmp_path / "logs") as c:
        c.start_nameserver()
        for name in ("s1", "s2"):
            c.start_secondary(name)
        c.start_master(["s1", "s2"], **FAST)     # returns as soon as the master answers
        driver.get(c.master.url + "/")           # so this is the first GET /cluster
        records = WebDriverWait(driver, 10, poll_frequency=0.05).until(
            lambda d: (d.execute_script("return window.__conn") or [None])[0] and
            d.execute_script("return window.__conn"), message="the first poll's outcome")
        shot("first-load")
        first = records[0]
        assert not first["lost"] and first["text"].startswith("updated"), records
        assert sorted(first["cards"]) == ["master", "s1", "s2"], records

        def tails_read():        # then the tails arrive, still without any error shown
            notes = [a.find_element(By.CSS_SELECTOR, ".tail-note").text
                     for a in driver.find_elements(By.CSS_SELECTOR, "article.node")]
            return len(notes) == 3 and all(n == "" for n in notes)
        WebDriverWait(driver, 10, poll_frequency=0.05,
                      ignored_exceptions=(NoSuchElementException,
                                          StaleElementReferenceException)).until(
            lambda _: tails_read(), message="the secondaries' tails")
        records = driver.execute_script("return window.__conn")
        assert not [r for r in records if r["lost"]], records
