"""The dashboard in a real browser against a real local cluster (issue 11's scenarios).

The tests share one cluster (module scope) and run in order; each starts from a healthy,
fault-free cluster. Every step's screenshot is saved (see conftest.py)."""
import time
import uuid

import pytest
import requests
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from nodes.launcher import http_json, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SECONDARIES = ("s1", "s2")


def wait(driver, predicate, timeout, what):
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(NoSuchElementException,
                                             StaleElementReferenceException)
                         ).until(lambda _: predicate(), message=f"waiting for {what}")


def card(driver, name):
    return driver.find_element(By.CSS_SELECTOR, f'article.node[data-name="{name}"]')


def status(driver, name):
    return card(driver, name).get_attribute("data-status")


def tail_text(driver, name, seq):
    items = card(driver, name).find_elements(By.CSS_SELECTOR, f'.tail li[data-seq="{seq}"]')
    return items[0].text if items else None


def lag(driver, name):
    return int(card(driver, name).find_element(By.CSS_SELECTOR, ".lag-num").text)


def lag_bar_width(driver, name):
    bar = card(driver, name).find_element(By.CSS_SELECTOR, ".lag-bar")
    return bar.size["width"]


def answer(driver):
    return driver.find_element(By.ID, "answer")


def banner_shown(driver):
    return driver.find_element(By.ID, "banner").is_displayed()


def submit_append(driver, message, w, timeout=None):
    box = driver.find_element(By.ID, "msg")
    box.clear()
    box.send_keys(message)
    Select(driver.find_element(By.ID, "w")).select_by_value(str(w))
    t = driver.find_element(By.ID, "timeout")
    t.clear()
    if timeout is not None:
        t.send_keys(str(timeout))
    driver.find_element(By.ID, "send").click()


@pytest.fixture
def page(driver, dash_cluster):
    """The dashboard, opened on a cluster that is healthy and has no faults injected."""
    c = dash_cluster
    for proc in c.procs.values():
        proc.resume()
    for name in SECONDARIES:
        assert http_json("POST", c.procs[name].url + "/faults",
                         {"delay": 0, "error_rate": 0})[0] == 200
    wait_until(lambda: all(s["status"] == "Healthy" for s in
                           http_json("GET", c.master.url + "/health")[1]["secondaries"].values()),
               30, what="every secondary Healthy")
    driver.get(c.master.url + "/")
    # the cards appear with the first poll's answer, after the load event driver.get awaits
    wait(driver, lambda: all(card(driver, n) for n in ("master",) + SECONDARIES), 10,
         "the page to draw every node")
    return driver


def test_lists_master_and_both_secondaries_as_healthy(page, shot):
    wait(page, lambda: all(status(page, n) == "Healthy" for n in ("master",) + SECONDARIES),
         10, "master and both secondaries Healthy on the page")
    assert card(page, "master").find_element(By.CSS_SELECTOR, ".status").text == "writable"
    for name in SECONDARIES:
        assert card(page, name).find_element(By.CSS_SELECTOR, ".status").text == "Healthy"
    assert not banner_shown(page)
    assert page.find_element(By.ID, "cluster-size").text == "3"
    shot("healthy")


def test_append_w3_through_the_form_shows_its_seq_in_every_column(page, shot):
    message = f"hello-{uuid.uuid4().hex[:6]}"
    submit_append(page, message, 3)
    wait(page, lambda: answer(page).get_attribute("data-status") == "201", 10, "the 201 answer")
    answered = time.monotonic()
    seq = int(answer(page).get_attribute("data-seq"))
    assert f"seq {seq}, acks 3 of w=3" in answer(page).text
    wait(page, lambda: all(message in (tail_text(page, n, seq) or "")
                           for n in ("master",) + SECONDARIES),
         10, f"seq {seq} in every node's column")
    print(f"\nseq {seq} shown in every column {time.monotonic() - answered:.2f} s after the "
          "201 reached the page")
    shot("appended")


def test_delay_on_a_secondary_makes_w3_wait_and_moves_the_lag_bar(page, shot):
    # the fault control on s2's card (through the master: POST /cluster/faults)
    form = card(page, "s2").find_element(By.CSS_SELECTOR, "form.faults")
    wait(page, form.is_displayed, 10, "s2's fault controls")
    delay = form.find_element(By.CSS_SELECTOR, ".delay")
    delay.clear()
    delay.send_keys("2")
    form.find_element(By.CSS_SELECTOR, "button").click()
    faulty = card(page, "s2").find_element(By.CSS_SELECTOR, ".faulty")
    wait(page, faulty.is_displayed, 10, "the faults mark on s2")
    assert "delay 2" in faulty.text
    assert not card(page, "s1").find_element(By.CSS_SELECTOR, ".faulty").is_displayed()
    assert card(page, "s1").find_element(By.CSS_SELECTOR, "form.faults").is_displayed()
    assert not card(page, "master").find_element(By.CSS_SELECTOR, "form.faults").is_displayed()
    shot("delay-set")

    submit_append(page, "slow-one", 3)
    wait(page, lambda: "waiting for w=3" in answer(page).text, 5, "the form to show it waits")
    wait(page, lambda: lag(page, "s2") >= 1 and lag_bar_width(page, "s2") > 0, 5,
         "s2's lag and lag bar to move while the append waits")
    assert "answer wait" in answer(page).get_attribute("class")   # still waiting
    shot("waiting-lag")
    wait(page, lambda: answer(page).get_attribute("data-status") == "201", 15, "the 201")
    took = int(answer(page).text.rsplit(" in ", 1)[1].split()[0])
    assert took >= 2000, answer(page).text        # it really waited for the delayed s2
    wait(page, lambda: lag(page, "s2") == 0 and lag_bar_width(page, "s2") == 0, 10,
         "s2 caught up")
    shot("answered")


def test_a_paused_secondary_turns_suspected_then_unhealthy(page, dash_cluster, shot):
    s1 = dash_cluster.procs["s1"]
    s1.pause()
    try:
        wait(page, lambda: status(page, "s1") == "Suspected", 10, "s1 Suspected")
        shot("suspected")
        wait(page, lambda: status(page, "s1") == "Unhealthy", 10, "s1 Unhealthy")
        assert not banner_shown(page)           # one of three down: still a quorum
        # the feed follows the master's tick loop, a tick behind the status
        wait(page, lambda: "s1 is Unhealthy" in page.find_element(By.ID, "events").text, 5,
             "the Unhealthy event")
        shot("unhealthy")
    finally:
        s1.resume()
    wait(page, lambda: status(page, "s1") == "Healthy", 15, "s1 Healthy again")
    assert "s1 is Suspected" in page.find_element(By.ID, "events").text
    shot("healthy-again")


def test_both_paused_shows_the_read_only_banner_until_sigcont(page, dash_cluster, shot):
    procs = [dash_cluster.procs[n] for n in SECONDARIES]
    for p in procs:
        p.pause()
    try:
        wait(page, lambda: banner_shown(page), 15, "the read-only banner")
        assert "no quorum" in page.find_element(By.ID, "banner").text
        assert page.find_element(By.ID, "mode").text == "read-only"
        shot("read-only")
    finally:
        for p in procs:
            p.resume()
    wait(page, lambda: not banner_shown(page), 15, "the banner to go away")
    assert page.find_element(By.ID, "mode").text == "writable"
    wait(page, lambda: "quorum back" in page.find_element(By.ID, "events").text, 5,
         "the 'quorum back' event")
    shot("writable-again")


def test_a_secondary_started_late_appears_on_its_own(page, dash_cluster, shot):
    wait(page, lambda: status(page, "s2") == "Healthy", 10, "the page")
    assert not page.find_elements(By.CSS_SELECTOR, 'article.node[data-name="s3"]')
    dash_cluster.start_secondary("s3")
    wait(page, lambda: status(page, "s3") == "Healthy", 20, "s3 to appear, Healthy")
    wait(page, lambda: page.find_element(By.ID, "cluster-size").text == "4", 5, "size 4")
    last = requests.get(dash_cluster.master.url + "/health", timeout=5).json()["last_seq"]
    wait(page, lambda: tail_text(page, "s3", last) is not None, 10, "s3 caught up, in its column")
    wait(page, lambda: "discovered s3" in page.find_element(By.ID, "events").text, 5,
         "the discovery event")
    shot("late-secondary")


def test_without_allow_faults_the_page_hides_the_fault_controls(driver, tmp_path, shot):
    from nodes.launcher import LocalCluster
    from tests.integration.conftest import FAST
    with LocalCluster(tmp_path / "logs") as c:
        c.start_nameserver()
        c.start_secondary("s1", allow_faults=False)
        c.start_secondary("s2")
        c.start_master(["s1", "s2"], allow_faults=False, **FAST)
        driver.get(c.master.url + "/")
        wait(driver, lambda: all(status(driver, n) == "Healthy" for n in SECONDARIES), 10,
             "both secondaries Healthy")
        # the tails (which say whether a secondary allows faults) have arrived too
        wait(driver, lambda: all(card(driver, n).find_elements(By.CSS_SELECTOR, ".tail-note")
                                 [0].text == "" for n in SECONDARIES), 10, "the tails")
        for name in ("master",) + SECONDARIES:
            assert not card(driver, name).find_element(By.CSS_SELECTOR,
                                                       "form.faults").is_displayed()
        shot("no-fault-controls")
