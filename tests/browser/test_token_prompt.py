"""The dashboard against a master with HTTPS and tokens, in a real browser: the page asks for
a token, draws the cluster once given one with the role read, says so when the token lacks a
role (append), and asks again once its token is revoked."""

import pytest
from selenium.webdriver.common.by import By

from nodes import tokens
from nodes.launcher import LocalCluster, http_json, wait_until
from tests.integration.conftest import FAST
from .conftest import chrome
from .test_dashboard import answer, card, submit_append, wait

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def https_driver():
    """Like conftest's driver, but trusting any certificate: the cluster's CA is made on the
    spot and Chromium has no flag to add one (HTTPS's own checks are tested with requests in
    tests/integration/test_client_security.py)."""
    d = chrome("--ignore-certificate-errors")
    yield d
    d.quit()


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-tokens")
    tfile = root / "tokens.json"
    c = LocalCluster(root / "logs", https=True, tokens=tfile)
    c.start_nameserver()
    c.start_secondary("s1")
    c.start_master(["s1"], **FAST)
    c.tfile = tfile
    yield c
    c.close()


def live(c, token):
    """Wait until the master has read the token file with `token` in it (within 2 s)."""
    wait_until(lambda: http_json("GET", c.master.url + "/health", token=token, ca=c.ca,
                                 timeout=5)[0] == 200, 10, what="the new token to be live")


def give_token(driver, token):
    form = driver.find_element(By.ID, "token-form")
    wait(driver, form.is_displayed, 15, "the token prompt")
    box = driver.find_element(By.ID, "token")
    box.send_keys(token)
    driver.find_element(By.ID, "token-use").click()


def test_token_prompt(https_driver, locked, artifacts):
    d = https_driver
    d.get(locked.master.url + "/")
    form = d.find_element(By.ID, "token-form")
    wait(d, form.is_displayed, 15, "the token prompt on a master with tokens")
    assert "needs an access token" in d.find_element(By.ID, "token-note").text
    d.save_screenshot(str(artifacts / "token_prompt-01-asked.png"))

    reader = tokens.add(locked.tfile, "browser-reader", ["read"])
    live(locked, reader)
    give_token(d, reader)
    wait(d, lambda: not form.is_displayed(), 10, "the prompt to go")
    wait(d, lambda: card(d, "s1").get_attribute("data-status") == "Healthy", 20,
         "s1 drawn as Healthy with the read token")
    d.save_screenshot(str(artifacts / "token_prompt-02-reading.png"))

    submit_append(d, "needs append", 1)          # read only: 403, and the prompt says why
    wait(d, lambda: answer(d).get_attribute("data-status") == "403", 10, "a 403 answer")
    wait(d, form.is_displayed, 10, "the prompt again")
    assert "lacks the role append" in d.find_element(By.ID, "token-note").text

    writer = tokens.add(locked.tfile, "browser-writer", ["read", "append"])
    live(locked, writer)
    give_token(d, writer)
    submit_append(d, "hello with a token", 1)
    wait(d, lambda: answer(d).get_attribute("data-status") == "201", 10, "a 201 answer")
    d.save_screenshot(str(artifacts / "token_prompt-03-appended.png"))

    tokens.revoke(locked.tfile, "browser-writer")     # picked up by the master within 2 s
    wait(d, form.is_displayed, 15, "the prompt after the token was revoked")
    assert "not accepted" in d.find_element(By.ID, "token-note").text
    d.save_screenshot(str(artifacts / "token_prompt-04-revoked.png"))
    for t in (reader, writer):
        assert t not in locked.master.log_path.read_text()
