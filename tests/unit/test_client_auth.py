"""nodes.tokens and nodes.auth in process: the token file, the route table, the Guard's
answers, its bounds (with a fake clock) and what it logs."""
import io
import json
import os

import pytest
from loguru import logger

from nodes import auth, tokens


@pytest.fixture
def tfile(tmp_path):
    return tmp_path / "tokens.json"


@pytest.fixture
def logged():
    lines = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{message}")
    yield lines
    logger.remove(sink)


def test_file_keeps_digests_only_and_mode_0600(tfile):
    t = tokens.add(tfile, "alice", ["read", "append"])
    assert t.startswith(tokens.PREFIX) and len(t) > 40
    text = tfile.read_text()
    assert t not in text and tokens.digest(t).hex() in text
    assert os.stat(tfile).st_mode & 0o777 == 0o600
    [entry] = tokens.read_file(tfile)
    assert entry.name == "alice" and entry.roles == {"read", "append"}


def test_add_refuses_duplicates_bad_roles_and_names(tfile):
    tokens.add(tfile, "a", ["read"])
    with pytest.raises(ValueError):
        tokens.add(tfile, "a", ["read"])
    with pytest.raises(ValueError):
        tokens.add(tfile, "b", ["root"])
    with pytest.raises(ValueError):
        tokens.add(tfile, "b c", ["read"])


def test_cli_prints_the_token_once(tfile, capsys):
    assert tokens.main(["add", "ci", "--roles", "append", "--file", str(tfile)]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith(tokens.PREFIX) and token not in out.err
    assert tokens.main(["list", "--file", str(tfile)]) == 0
    listed = capsys.readouterr().out
    assert "ci" in listed and "append" in listed and token not in listed
    assert tokens.main(["revoke", "ci", "--file", str(tfile)]) == 0
    assert tokens.main(["revoke", "ci", "--file", str(tfile)]) == 1


def test_store_reloads_changes_and_fails_closed(tfile):
    a = tokens.add(tfile, "a", ["read"])
    store = tokens.TokenStore(tfile, reload_every=0)
    assert store.find(a).name == "a"
    b = tokens.add(tfile, "b", ["append"])
    assert store.find(b).name == "b"
    tokens.revoke(tfile, "a")
    assert store.find(a) is None
    tfile.write_text("{not json")
    assert store.find(b).name == "b"          # a broken file keeps the last good set
    tfile.unlink()
    assert store.find(b) is None              # a deleted one revokes everything


def test_route_table_and_default_deny():
    assert auth.route_of("POST", "/messages").role == "append"
    assert auth.route_of("GET", "/messages").role == "read"
    assert auth.route_of("HEAD", "/health").role == "read"
    assert auth.route_of("GET", "/messages/stream").role == "read"
    assert auth.route_of("GET", "/metrics").role == "metrics"
    assert auth.route_of("POST", "/faults").role == "admin"
    assert auth.route_of("POST", "/cluster/faults").role == "admin"
    assert auth.route_of("GET", "/dashboard/app.js").role == auth.PUBLIC
    assert auth.route_of("GET", "/dashboard/a/b").role == "admin"
    assert auth.route_of("GET", "/new-endpoint").role == "admin"
    assert auth.route_of("DELETE", "/messages").role == "admin"


def _env(method="GET", path="/health", token=None, query="", body=b"", addr="10.0.0.1"):
    env = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
           "REMOTE_ADDR": addr, "wsgi.input": io.BytesIO(body)}
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
    if token is not None:
        env["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return env


def _ok_app(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok:" + body]


def call(guard, env):
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)
    result = guard(env, start_response)
    body = b"".join(result)
    return int(seen["status"][:3]), seen["headers"], body, result


def test_guard_401_403_and_allowed(tfile, logged):
    r = tokens.add(tfile, "reader", ["read"])
    guard = auth.Guard(_ok_app, tokens.TokenStore(tfile))
    status, headers, body, _ = call(guard, _env())
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    status, headers, _, _ = call(guard, _env(token="rlg_wrong"))
    assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"]
    status, headers, _, _ = call(guard, _env("POST", "/messages", r, body=b"x"))
    assert status == 403 and 'scope="append"' in headers["WWW-Authenticate"]
    assert call(guard, _env(token=r))[0] == 200
    assert call(guard, _env(path="/", token=None))[0] == 200       # the static page
    # each refusal once per address and token, never the token itself
    for _ in range(5):
        call(guard, _env())
        call(guard, _env("POST", "/messages", r, body=b"x"))
    refusals = [line for line in logged if "refused" in line]
    assert len(refusals) == 3, refusals
    assert any("'reader'" in line and "10.0.0.1" in line for line in refusals)
    assert not any(r in line or "rlg_wrong" in line for line in logged)


def test_guard_without_tokens_lets_everything_through():
    guard = auth.Guard(_ok_app, None)
    assert call(guard, _env("POST", "/faults", body=b"{}"))[0] == 200


def test_append_rate_per_token_with_retry_after(tfile):
    a = tokens.add(tfile, "a", ["append"])
    b = tokens.add(tfile, "b", ["append"])
    now = [100.0]
    guard = auth.Guard(_ok_app, tokens.TokenStore(tfile),
                       auth.Limits(append_rate=2, append_burst=3), clock=lambda: now[0])
    statuses = [call(guard, _env("POST", "/messages", a, body=b"m"))[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    status, headers, _, _ = call(guard, _env("POST", "/messages", a, body=b"m"))
    assert status == 429 and int(headers["Retry-After"]) >= 1
    assert call(guard, _env("POST", "/messages", b, body=b"m"))[0] == 200   # its own bucket
    now[0] += 0.5                                # one more append's worth
    assert call(guard, _env("POST", "/messages", a, body=b"m"))[0] == 200
    assert call(guard, _env("POST", "/messages", a, body=b"m"))[0] == 429


def test_append_rate_per_address_without_tokens():
    now = [0.0]
    guard = auth.Guard(_ok_app, None, auth.Limits(append_rate=1, append_burst=1),
                       clock=lambda: now[0])
    assert call(guard, _env("POST", "/messages", body=b"m", addr="1.1.1.1"))[0] == 200
    assert call(guard, _env("POST", "/messages", body=b"m", addr="1.1.1.1"))[0] == 429
    assert call(guard, _env("POST", "/messages", body=b"m", addr="2.2.2.2"))[0] == 200


def test_held_requests_bounded_until_closed(tfile):
    r = tokens.add(tfile, "r", ["read"])
    guard = auth.Guard(_ok_app, tokens.TokenStore(tfile), auth.Limits(max_held=2))
    open_ = [call(guard, _env(path="/messages/stream", token=r))[3] for _ in range(2)]
    status, headers, _, _ = call(guard, _env(path="/messages/stream", token=r))
    assert status == 429 and headers["Retry-After"] == "1"
    assert call(guard, _env(path="/messages", query="wait=5", token=r))[0] == 429
    assert call(guard, _env(path="/messages", token=r))[0] == 200    # not held: not counted
    open_[0].close()
    assert call(guard, _env(path="/messages/stream", token=r))[0] == 200


def test_body_is_handed_on_intact():
    guard = auth.Guard(_ok_app, None)
    body = json.dumps({"message": "x" * 1000}).encode()
    assert call(guard, _env("POST", "/messages", body=body))[2] == b"ok:" + body


def test_certs_says_loudly_where_the_ca_key_went(tmp_path, capsys):
    import subprocess
    from nodes import certs
    assert certs.main(["--out", str(tmp_path / "outside"), "--names", "a"]) == 0
    err = capsys.readouterr().err
    assert "WROTE THE CA PRIVATE KEY" in err and "NOT IGNORED" not in err
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    assert certs.main(["--out", str(repo / "keys"), "--names", "a"]) == 0
    assert "AND NOT IGNORED" in capsys.readouterr().err
    # in this repository the default folder is ignored
    root = certs.Path(__file__).resolve().parents[2]
    assert subprocess.run(["git", "-C", str(root), "check-ignore", "-q", "certs/ca.key"]).returncode == 0
    assert subprocess.run(["git", "-C", str(root), "check-ignore", "-q",
                           "deploy/swarm/certs/master/node.key"]).returncode == 0
