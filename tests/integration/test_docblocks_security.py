"""The TLS, certificate and token blocks of README.md and docs/security.md, run as written
(tests/docblocks.py) in a temporary folder, where `certs/` and `tokens.json` land.

A line that starts a node is started as a user would in a terminal of its own (in the
background here), on free ports: the documents' 5000-5003 and 9090 are replaced where a line
names them, and the REPLOG_* variable behind a flag (docs/configuration.md) gives the port
where a line leaves it to the default."""
import os

import pytest
import requests

from nodes.launcher import wait_until
from tests import docblocks
from tests.docblocks import Shell, sh_commands, substitute
from tests.integration.test_launcher import free_base


@pytest.fixture
def sec(tmp_path):
    base = free_base(5)
    ns = base + 5
    env = dict(os.environ, REPLOG_NS_PORT=str(ns), REPLOG_BASE_PORT=str(base),
               REPLOG_DATA_ROOT=str(tmp_path / ".replog-data"))
    for k in ("REPLOG_TOKEN", "REPLOG_TOKEN_FILE", "REPLOG_CA", "REPLOG_HTTP_PORT"):
        env.pop(k, None)
    shell = Shell(tmp_path, env, transcript=tmp_path / "transcript.txt")
    shell.base, shell.ns = base, ns
    shell.ports = {5000 + i: base + i for i in range(5)} | {9090: ns}
    shell.tmp = tmp_path
    try:
        yield shell
    finally:
        shell.close()
        print((tmp_path / "transcript.txt").read_text()[-5000:])
        for log in sorted(tmp_path.glob("*.log")):
            print(f"----- {log.name} -----\n{log.read_text(errors='replace')[-1500:]}")


def start(shell, command, name, **env):
    """A node's line, started in the background with its log in NAME.log."""
    return shell.background(substitute(command, shell.ports), shell.tmp / f"{name}.log", env)


def health(shell, port=None, **kw):
    return requests.get(f"{'https' if kw else 'http'}://127.0.0.1:{port or shell.base}/health",
                        timeout=5, **kw).json()


def wait_counted(shell, names, **kw):
    def ok():
        h = health(shell, **kw)
        return not h["read_only"] and all(h["secondaries"].get(n, {}).get("status") == "Healthy"
                                          for n in names)
    wait_until(ok, 60, what=f"the master to count {names} Healthy")


def launcher_line(shell, command):
    """`python -m nodes.launcher --certs certs` on REPLOG_BASE_PORT/REPLOG_NS_PORT, once the
    hand-started nodes are stopped: its table, then SIGTERM (a clean stop, as Ctrl-C)."""
    shell.stop()
    log = shell.tmp / "launcher.log"
    pid = shell.background(command, log)
    wait_until(lambda: "Ctrl-C stops them all" in log.read_text(), 60, what="the launcher's table")
    assert "mutual TLS" in log.read_text()
    shell.stop(pid)


def test_certificates_and_a_tls_cluster(sec):
    """security.md: make the certificates, start every process with its folder, add a node,
    renew, a Python client with its own certificate (both ways), then the launcher line."""
    ns_port = str(sec.ns)
    (make,) = sh_commands(docblocks.block("certs-make"))
    sec.check(make)
    assert (sec.tmp / "certs" / "master" / "node.key").exists()
    nameserver, s1, s2, master, launcher = sh_commands(docblocks.block("tls-start"))
    start(sec, nameserver, "nameserver", REPLOG_PORT=ns_port)
    start(sec, s1, "secondary1")
    start(sec, s2, "secondary2")
    start(sec, master, "master", REPLOG_HTTP_PORT=str(sec.base))
    wait_counted(sec, ["secondary1", "secondary2"])
    assert requests.post(f"http://127.0.0.1:{sec.base}/messages", json={"message": "a", "w": 3},
                         timeout=30).status_code == 201

    issue, s3 = sh_commands(docblocks.block("tls-add-node"))
    sec.check(issue)
    start(sec, s3, "secondary3")
    wait_counted(sec, ["secondary1", "secondary2", "secondary3"])
    assert health(sec)["quorum"]["size"] == 4

    for line in sh_commands(docblocks.block("certs-renew")):
        sec.check(line)

    (client,) = sh_commands(docblocks.block("certs-client"))
    sec.check(client)
    code = substitute(docblocks.block("pyro5-tls-client").text, sec.ports)
    out = sec.check(f"python - <<'EOF'\n{code}print(master.messages())\nEOF")
    assert out.strip().endswith("['a', 'hello']"), out
    config = docblocks.block("pyro5-tls-config").text
    out = sec.check(f"python - <<'EOF'\n{config}"
                    f"import Pyro5.api\nprint(Pyro5.api.locate_ns('localhost', {ns_port}).list())\nEOF")
    assert "replog.master" in out, out

    launcher_line(sec, launcher)


def test_readme_tls_and_tokens_blocks(sec):
    """README's Security blocks: the TLS cluster by hand, the master again with HTTPS and a
    token file, curl with the printed token; then the launcher line."""
    make, nameserver, s1, master, launcher = sh_commands(docblocks.block("tls-readme"))
    sec.check(make)
    start(sec, nameserver, "nameserver", REPLOG_PORT=str(sec.ns))
    start(sec, s1, "secondary1", REPLOG_HTTP_PORT=str(sec.base + 1))
    first = start(sec, master, "master", REPLOG_HTTP_PORT=str(sec.base))
    wait_counted(sec, ["secondary1"])

    add, master_https, curl = sh_commands(docblocks.block("tokens-readme"))
    token = sec.check(add).strip().splitlines()[-1]
    assert token.startswith("rlg_"), token
    sec.check(f"export REPLOG_TOKEN={token}")       # the token it printed, kept by the user
    sec.stop(first)
    start(sec, master_https, "master-https", REPLOG_HTTP_PORT=str(sec.base))
    auth = {"verify": str(sec.tmp / "certs" / "ca.crt"),
            "headers": {"Authorization": f"Bearer {token}"}}
    wait_counted(sec, ["secondary1"], **auth)
    out = sec.check(substitute(curl, sec.ports))
    assert '"role": "master"' in out, out

    launcher_line(sec, launcher)


def test_https_and_tokens_blocks(sec):
    """security.md's HTTPS block (a master with a certificate naming extra hosts, curl with
    the CA) and the token file's management block, on a name server of their own."""
    sec.background("python -m nameserver", sec.tmp / "nameserver.log", {"REPLOG_PORT": str(sec.ns)})
    make, master, curl = sh_commands(docblocks.block("https-master"))
    sec.check(make)
    start(sec, master, "master", REPLOG_HTTP_PORT=str(sec.base))
    wait_until(lambda: health(sec, verify=str(sec.tmp / "certs" / "ca.crt")), 60,
               what="the master over HTTPS")
    out = sec.check(substitute(curl, sec.ports))
    assert '"role": "master"' in out, out

    add, list_, revoke = sh_commands(docblocks.block("tokens-manage"))
    sec.check("export REPLOG_TOKENS=")          # --file is given: no default needed
    assert sec.check(add).strip().splitlines()[-1].startswith("rlg_")
    assert "alice" in sec.check(list_)
    sec.check(revoke)
    assert "alice" not in sec.check(list_)
