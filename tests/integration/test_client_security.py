"""The client plane on real processes: HTTPS on every node's HTTP port, tokens with roles on
every endpoint (allowed, 401, 403), revocation without a restart, a wrong CA refused, the
per-client bounds (429) and the slow-request deadlines, and no token in any log line."""
import socket
import ssl

import pytest
import requests

from nodes import certs, tokens
from nodes.launcher import LocalCluster, wait_until
from .conftest import FAST, _show_logs

ROLES = ("append", "read", "metrics", "admin")


@pytest.fixture(scope="module")
def sec(tmp_path_factory):
    """Name server, master, s1 over mutual TLS, each serving HTTPS with its node
    certificate and checking one token file; one token per role, and one with all."""
    root = tmp_path_factory.mktemp("clientsec")
    tfile = root / "tokens.json"
    toks = {role: tokens.add(tfile, f"only-{role}", [role]) for role in ROLES}
    toks["all"] = tokens.add(tfile, "all", list(ROLES))
    c = LocalCluster(root / "logs", tls_dir=root / "certs", https=True, tokens=tfile)
    c.start_nameserver()
    try:
        s1 = c.start_secondary("s1")
        master = c.start_master(["s1"], **FAST)
        c.root, c.tfile, c.toks = root, tfile, toks
        c.s1 = s1
        yield c
    except BaseException:
        _show_logs(c)
        raise
    finally:
        c.close()


def session(c, token=None):
    s = requests.Session()
    s.trust_env = False          # else REQUESTS_CA_BUNDLE would win over s.verify
    s.verify = str(c.ca)
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    return s


def endpoints(c):
    """(node, method, path, json body, role needed)."""
    m, s1 = c.master.url, c.s1.url
    return [
        (m, "POST", "/messages", {"message": "x", "w": 1}, "append"),
        (m, "GET", "/messages", None, "read"),
        (s1, "GET", "/messages", None, "read"),
        (m, "GET", "/health", None, "read"),
        (s1, "GET", "/health", None, "read"),
        (m, "GET", "/cluster", None, "read"),
        (m, "GET", "/metrics", None, "metrics"),
        (s1, "GET", "/metrics", None, "metrics"),
        (s1, "POST", "/faults", {"delay": 0, "error_rate": 0}, "admin"),
        (m, "POST", "/cluster/faults", {"secondary": "s1", "delay": 0, "error_rate": 0}, "admin"),
        (m, "GET", "/no-such-endpoint", None, "admin"),      # unknown: admin only
    ]


def test_every_role_against_every_endpoint(sec):
    assert sec.master.url.startswith("https://") and sec.s1.url.startswith("https://")
    wait_until(lambda: session(sec, sec.toks["all"]).get(sec.master.url + "/health", timeout=5)
               .json()["secondaries"].get("s1", {}).get("status") == "Healthy", 30,
               what="s1 healthy")
    problems = []
    for url, method, path, body, role in endpoints(sec):
        for who in (None, "bad", *ROLES, "all"):
            token = {None: None, "bad": "rlg_" + "A" * 43}.get(who, sec.toks.get(who))
            with session(sec, token) as s:
                r = s.request(method, url + path, json=body, timeout=10)
            if who in (None, "bad"):
                want = "401"
            elif who == role or who == "all":
                want = "allowed"
            else:
                want = "403"
            got = str(r.status_code) if r.status_code in (401, 403) else "allowed"
            if got != want:
                problems.append(f"{method} {url}{path} as {who}: {r.status_code} {r.text[:80]}")
            if r.status_code == 401:
                assert r.headers["WWW-Authenticate"].startswith("Bearer realm=")
    assert not problems, "\n".join(problems)


def test_dashboard_page_is_static_and_open(sec):
    with session(sec) as s:
        r = s.get(sec.master.url + "/", timeout=10)
        assert r.status_code == 200 and "token-form" in r.text
        assert s.get(sec.master.url + "/dashboard/app.js", timeout=10).status_code == 200


def test_revocation_without_restart(sec):
    token = tokens.add(sec.tfile, "short-lived", ["read"])
    with session(sec, token) as s:
        wait_until(lambda: s.get(sec.s1.url + "/health", timeout=5).status_code == 200, 10,
                   what="the new token to be accepted")
        tokens.revoke(sec.tfile, "short-lived")
        wait_until(lambda: s.get(sec.s1.url + "/health", timeout=5).status_code == 401, 10,
                   what="the revoked token to be refused")
        assert s.get(sec.master.url + "/health", timeout=5).status_code == 401


def test_https_with_another_ca_is_refused(sec, tmp_path):
    other = certs.ensure(tmp_path / "other", ["x"]) / "ca.crt"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(sec.master.url + "/", verify=str(other), timeout=10)
    # and no plain HTTP on the port either
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(sec.master.url.replace("https:", "http:") + "/", timeout=10)


def test_refusals_logged_once_without_the_token(sec):
    bad = "rlg_" + "B" * 43
    with session(sec, bad) as s:
        for _ in range(20):
            assert s.get(sec.s1.url + "/health", timeout=5).status_code == 401
    log = sec.procs["s1"].log_path.read_text()
    lines = [line for line in log.splitlines() if "invalid token" in line]
    assert len(lines) == 1 and "127.0.0.1" in lines[0]
    assert bad not in log


def test_no_token_in_any_log_line(sec):
    """Last in this module: every token used above, searched for in every node's log."""
    every = list(sec.toks.values()) + [sec.probe_token]
    for proc in sec.procs.values():
        text = proc.log_path.read_text()
        for t in every:
            assert t not in text, f"a token is in {proc.log_path}"
            assert t[4:20] not in text


# -- bounds: a master of its own with small limits and deadlines, plain HTTP, no tokens --

def lone_master(tmp_path_factory, name, **flags):
    """A name server and a master of its own, no secondary, with `flags` (a generator for a
    module fixture: its logs are shown when starting it fails)."""
    c = LocalCluster(tmp_path_factory.mktemp(name) / "logs")
    c.start_nameserver()
    try:
        c.start_master([], **flags)
        yield c
    except BaseException:
        _show_logs(c)
        raise
    finally:
        c.close()


@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    yield from lone_master(tmp_path_factory, "tight", append_rate=0.01, append_burst=3,
                           header_timeout=0.5, body_timeout=0.5, idle_timeout=2, max_held=2)


def test_append_rate_limit_answers_429_with_retry_after(tight):
    with requests.Session() as s:
        answers = [s.post(tight.master.url + "/messages", json={"message": f"m{i}", "w": 1},
                          timeout=10) for i in range(5)]
    assert [r.status_code for r in answers] == [201, 201, 201, 429, 429]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert s.get(tight.master.url + "/health", timeout=5).status_code == 200   # reads go on


def _recv_all(sock):
    sock.settimeout(30)      # a bound on the test, far above the node's deadlines
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


def test_slow_headers_get_408_and_the_connection_closes(tight):
    with socket.create_connection(("127.0.0.1", tight.master.http_port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")     # and never the blank line
        assert _recv_all(sock).startswith(b"HTTP/1.1 408")


def test_trickled_body_gets_408_and_the_connection_closes(tight):
    with socket.create_connection(("127.0.0.1", tight.master.http_port)) as sock:
        sock.sendall(b"POST /cluster/faults HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 100\r\n\r\n{\"mess")
        answer = _recv_all(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def _answer(sock):
    """One whole answer on a kept-alive connection (its headers and Content-Length body)."""
    sock.settimeout(30)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += sock.recv(4096)
    return head


def test_deadlines_hold_on_every_request_of_a_kept_alive_connection(tight):
    """A connection reuses its deadlines from one request to the next (nodes.edge.Deadline):
    after answered requests, slow headers and then a trickled body still get their 408."""
    with socket.create_connection(("127.0.0.1", tight.master.http_port)) as sock:
        for _ in range(3):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _answer(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")     # and never the blank line
        assert _recv_all(sock).startswith(b"HTTP/1.1 408")
    with socket.create_connection(("127.0.0.1", tight.master.http_port)) as sock:
        for _ in range(3):
            sock.sendall(b"POST /cluster/faults HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/json\r\nContent-Length: 2\r\n\r\n{}")
            assert not _answer(sock).startswith(b"HTTP/1.1 408")
        sock.sendall(b"POST /cluster/faults HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 100\r\n\r\n{\"mess")
        assert _recv_all(sock).startswith(b"HTTP/1.1 408")


def test_idle_connection_is_closed(tight):
    with socket.create_connection(("127.0.0.1", tight.master.http_port)) as sock:
        assert _recv_all(sock) == b""        # closed by the node, without an answer


@pytest.fixture(scope="module")
def stalled(tmp_path_factory):
    """A master whose clients have 1 s to take each send of an answer, one held request each."""
    yield from lone_master(tmp_path_factory, "stalled", write_timeout=1, max_held=1,
                           fsync="never")


def _stream_status(url: str) -> int:
    with requests.get(url + "/messages/stream?from=1", stream=True, timeout=10) as r:
        return r.status_code


def test_a_client_that_stops_reading_a_stream_is_dropped_and_its_slot_comes_back(stalled):
    """A stream whose client never reads: once the node's socket buffers are full, its next
    send waits at most --write-timeout, then the connection goes, and with it the client's
    --max-held slot (before the write deadline, the greenlet and the slot were held for ever)."""
    url = stalled.master.url
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # fills at once
        sock.connect(("127.0.0.1", stalled.master.http_port))
        sock.sendall(b"GET /messages/stream?from=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: _stream_status(url) == 429, timeout=10,
                   what="the stalled stream holds the address's only slot")
        big = "x" * 500_000
        with requests.Session() as s:
            for i in range(32):      # 16 MB: far more than loopback's socket buffers hold
                r = s.post(url + "/messages", json={"message": big, "w": 1}, timeout=30)
                assert r.status_code == 201, r.text
        wait_until(lambda: _stream_status(url) == 200, timeout=30,
                   what="the stalled stream dropped after --write-timeout, its slot back")


def test_launcher_probe_and_cli_over_https(sec):
    """The launcher's own HTTP helper talks HTTPS with the CA and its token."""
    from nodes.launcher import http_json
    status, body = http_json("GET", sec.master.url + "/health", token=sec.probe_token,
                             ca=sec.ca)
    assert status == 200 and body["role"] == "master"
    with pytest.raises(Exception):
        http_json("GET", sec.master.url + "/health", token=sec.probe_token)   # no CA: refused
    ctx = ssl.create_default_context(cafile=str(sec.ca))
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", sec.master.http_port)) as raw:
        with ctx.wrap_socket(raw) as tls_sock:
            assert tls_sock.version() in ("TLSv1.2", "TLSv1.3")


def test_pyro_client_without_certificate_is_told_how_to_get_one(sec):
    """Pyro5 alone says "Failed to locate the nameserver" or "receiving: not enough data"."""
    from nodes import rpc, tls
    tls.uninstall()
    with pytest.raises(rpc.ClientCertificateRequired, match="python -m nodes.certs"):
        rpc.locate_ns("127.0.0.1", sec.ns_port, 2.0)
    with pytest.raises(rpc.ClientCertificateRequired, match="client certificate"):
        with rpc.proxy(f"PYRONAME:replog.master@127.0.0.1:{sec.ns_port}", 2.0) as p:
            p.health()


def test_a_node_without_a_token_file_warns_that_its_api_is_open(tight, sec):
    log = tight.master.log_path.read_text()
    assert log.count("the client API is OPEN") == 1
    assert "client API is OPEN" not in sec.master.log_path.read_text()


def test_plain_http_port_only_when_asked_for(tmp_path):
    from nodes.launcher import free_port, http_json
    c = LocalCluster(tmp_path / "logs", https=True)
    c.start_nameserver()
    try:
        plain = free_port()
        m = c.start_master([], plain_http_port=plain)
        assert http_json("GET", m.url + "/health", ca=c.ca)[0] == 200              # HTTPS
        assert http_json("GET", f"http://127.0.0.1:{plain}/health")[0] == 200      # and plain
        assert "plain HTTP also on" in m.log_path.read_text()
    finally:
        c.close()


def test_launcher_cli_with_https_and_tokens(tmp_path):
    from .test_launcher import Launched
    tfile = tmp_path / "tokens.json"
    reader = tokens.add(tfile, "reader", ["read"])
    cl = Launched(tmp_path, "--certs", str(tmp_path / "certs"), "--https", "--tokens", str(tfile))
    try:
        cl.wait_started()
        assert f"https://127.0.0.1:{cl.base}" in cl.out
        url = f"https://127.0.0.1:{cl.base}/health"
        ca = str(tmp_path / "certs" / "ca.crt")
        with requests.Session() as s:
            s.trust_env = False
            assert s.get(url, verify=ca, timeout=5).status_code == 401
            r = s.get(url, verify=ca, timeout=5, headers={"Authorization": f"Bearer {reader}"})
            assert r.status_code == 200 and r.json()["role"] == "master"
        assert "client API: 2 token(s)" in cl.err + cl.out
    finally:
        cl.stop()


def test_a_refused_large_body_still_gets_its_answer(sec):
    """The node drops the unread body (within the body deadline) instead of closing on it:
    a client still sending would otherwise see a broken pipe instead of the 401 or 413."""
    with session(sec) as s:
        r = s.post(sec.master.url + "/messages", data=b"x" * (2 << 20), timeout=30,
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 401
        assert s.get(sec.master.url + "/", timeout=10).status_code == 200   # same session
    with session(sec, sec.toks["append"]) as s:
        r = s.post(sec.master.url + "/messages", data=b"x" * (2 << 20), timeout=30,
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 413


def test_held_long_polls_and_streams_are_bounded_per_client(tight):
    """--max-held 2: with two streams open, a third held request (stream or long-poll) is
    429 while a plain read still answers; a long-poll that has answered gives its slot back."""
    url = tight.master.url
    with requests.Session() as a, requests.Session() as b, requests.Session() as s:
        streams = [x.get(url + "/messages/stream?from=1000000", stream=True, timeout=30)
                   for x in (a, b)]
        assert [r.status_code for r in streams] == [200, 200]
        for path in ("/messages/stream", "/messages?from=1000000&wait=5"):
            r = s.get(url + path, timeout=30)
            assert r.status_code == 429, (path, r.status_code, r.text)
            assert r.headers["Retry-After"] == "1" and "long-polls/streams" in r.json()["error"]
        assert s.get(url + "/messages", timeout=10).status_code == 200     # not held
        streams[1].close()
        b.close()
    # the closed stream's slot comes back when the node notices (its next keep-alive write);
    # a long-poll's when it answers: room for one at a time, whichever is free
    with requests.Session() as s:
        wait_until(lambda: s.get(url + "/messages?wait=0.1", timeout=30).status_code == 200, 60,
                   what="a slot to be free again")


def test_python_client_with_a_token_and_the_ca(sec, monkeypatch):
    """replog_client over HTTPS: the token and CA as arguments, or from the environment."""
    from replog_client import BadRequest, Client
    with Client([sec.master.url], token=sec.toks["all"], ca=str(sec.ca), retries=1) as c:
        a = c.append("from the client", w=2)
        assert a.acks == 2 and c.read(from_seq=a.seq, limit=1).messages == ["from the client"]
    monkeypatch.setenv("REPLOG_TOKEN", sec.toks["read"])
    monkeypatch.setenv("REPLOG_CA", str(sec.ca))
    with Client([sec.master.url], retries=1) as c:
        assert c.health()["role"] == "master"
        with pytest.raises(BadRequest) as refused:         # read-only token: 403
            c.append("not allowed", w=1)
        assert refused.value.status == 403


def test_cli_with_a_token_file_and_the_ca(sec, tmp_path):
    import subprocess
    import sys
    tfile = tmp_path / "token"
    tfile.write_text(sec.toks["all"] + "\n")
    base = [sys.executable, "-m", "replog_cli.main", "--master", sec.master.url,
            "--token-file", str(tfile), "--ca", str(sec.ca)]
    out = subprocess.run(base + ["append", "cli", "over", "https", "-w", "2", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert '"acks": 2' in out.stdout
    no_token = subprocess.run([sys.executable, "-m", "replog_cli.main", "--master",
                               sec.master.url, "--ca", str(sec.ca), "health"],
                              capture_output=True, text=True, timeout=60, env={
                                  **__import__("os").environ, "REPLOG_TOKEN": ""})
    assert no_token.returncode == 1 and "401" in no_token.stderr + no_token.stdout
