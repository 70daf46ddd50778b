"""README's and docs/docker.md's and docs/security.md's compose blocks, run as written
(tests/docblocks.py) on ONE compose project, in the order a reader meets them: build and up,
the quick start and its session, reading logs, faults, a partition (of the two
secondaries the compose file has), docs/docker-volumes.md's volumes, backups, restore and
fresh start, then adding secondaries (to the fresh cluster).

What differs from a user's terminal, and only that: the project's name (COMPOSE_PROJECT_NAME,
so that it runs beside other projects on a shared engine), the host ports (MASTER_PORT, ...,
the documented settings; the documents' 5000-5004 in a command become those ports), the
name of the extra secondary's container (a suffix, for the same reason), short health
timings, and `docker compose` typed as `docker-compose` where only Compose 1.29 is
installed, as the documents say to. `--build` builds from the local base on a machine with no
registry (REPLOG_BASE_IMAGE=replog-base:bookworm), as docs/docker.md says to.
"""
from __future__ import annotations

import re
import uuid

import pytest

from tests import docblocks
from tests.docblocks import Shell, run_console, sh_commands, substitute

from .conftest import COMPOSE_FILE, IMAGE, Cluster, _active, free_port, wait_until

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def project(image, compose_cmd, tmp_path_factory):
    c = Cluster(compose_cmd, {}, tmp_path_factory.getbasetemp() / "docker-logs")
    c.env.update(COMPOSE_PROJECT_NAME=c.project, REPLOG_BASE_IMAGE="replog-base:bookworm")
    c.ports4 = free_port()
    c.ports_map = {5000: c.ports["master"], 5001: c.ports["secondary1"],
                   5002: c.ports["secondary2"], 5003: c.ports["secondary3"], 5004: c.ports4}
    c.suffix = uuid.uuid4().hex[:6]
    transcript = tmp_path_factory.mktemp("docblocks") / "transcript.txt"
    c.shell = Shell(docblocks.ROOT, c.env, transcript=transcript)
    _active.append(c)
    try:
        yield c
    finally:
        print(transcript.read_text()[-6000:])
        c.shell.close()
        _active.remove(c)
        c.docker("rm", "-f", f"replog-secondary4-{c.suffix}", timeout=60) if c.docker(
            "ps", "-aq", "--filter", f"name=replog-secondary4-{c.suffix}").stdout.strip() else None
        c.down()


def local(c: Cluster, command: str) -> str:
    return substitute(command, c.ports_map).replace("replog-secondary4",
                                                    f"replog-secondary4-{c.suffix}")


def run_block(c: Cluster, name: str, timeout: float = 300) -> None:
    for command in sh_commands(docblocks.block(name)):
        c.shell.check(local(c, command), timeout=timeout)
        if "# wait for (healthy)" in command:     # what the user waits for before going on
            service = command.split("#")[0].split()[-1]
            wait_until(lambda: "(healthy)" in c.shell.check(local(c, command)), 120,
                       what=f"{service} (healthy)")


def wait_ready(c: Cluster, names=("secondary1", "secondary2")) -> None:
    for node in ("master", *names):
        c.wait_http(node, timeout=120)
    c.wait_statuses({n: "Healthy" for n in names}, timeout=120)


def test_readme_build_and_up(project):
    """README's `scripts/docker-build.sh` + `docker compose up -d`, and docs/docker.md's same
    pair for a machine with no registry."""
    run_block(project, "docker-build", timeout=1200)
    wait_ready(project)
    run_block(project, "compose-no-registry", timeout=1200)
    wait_ready(project)


def test_quick_start(project):
    """docs/docker.md's quick start (`up --build`, both compose forms) and its session, whose
    every output is compared with the one shown; the log is still empty here."""
    run_block(project, "compose-quick-start", timeout=900)
    wait_ready(project)
    run_console(project.shell, docblocks.block("compose-quick-start-session"), project.ports_map,
                retry={"localhost:5000/health": 15})


def test_reading_logs(project):
    """docs/docker.md's log commands; `-f` ones get a Ctrl-C after a few seconds."""
    for command in sh_commands(docblocks.block("compose-logs")):
        if " -f" in command:
            rc, out = project.shell.until_interrupted(local(project, command), 4)
            assert rc in (0, 124, 130) and "| master" in out, out[-2000:]
        else:
            project.shell.check(local(project, command), timeout=300)
    wait_ready(project)


def test_faults_to_try(project):
    """docs/docker.md's fault commands, each as written, and the partition of both
    secondaries: the master turns read-only, and writable again once they are back."""
    run_block(project, "compose-faults")
    wait_ready(project)
    net, cut, heal = sh_commands(docblocks.block("compose-partition"))
    project.shell.check(net)
    project.shell.check(cut)
    wait_until(lambda: project.health()["read_only"], 60, what="read-only without quorum")
    assert project.post("cut off", w=1).status_code == 503
    project.shell.check(heal)
    wait_until(lambda: not project.health()["read_only"], 60, what="writable again")
    assert project.post("healed", w=3, timeout=30).status_code == 201


def volumes_local(c: Cluster, command: str) -> str:
    """The project's name for `replog` in volume and network names, the tests' image."""
    command = re.sub(r"(?<![\w./-])replog_(?=[\w-])", f"{c.project}_", command)
    return command.replace("replog:latest", IMAGE)


def test_volumes_backup_restore_fresh(project, tmp_path):
    """docs/docker-volumes.md, every block in order, in an empty folder (where the backups
    land; COMPOSE_FILE names the project's compose file): the volumes listed, a Pyro5 client
    on the project's network, a tar backup of a running secondary, a copy of a stopped one,
    the master restored from the tar file while its secondaries run (it adopts their longer
    log: nothing acknowledged is lost), then a fresh start with `down -v` and `up -d`."""
    c = project
    if c.compose("ps", "-q", "master", check=False).stdout.strip() == "":
        c.up()                                  # run alone (-k): the module's cluster first
    wait_ready(c)
    shell = Shell(tmp_path, c.env | {"COMPOSE_FILE": str(COMPOSE_FILE)},
                  transcript=tmp_path / "transcript.txt")
    try:
        def run(name: str) -> list[str]:
            return [shell.check(volumes_local(c, command), timeout=300)
                    for command in sh_commands(docblocks.block(name))]

        (listed,) = run("volumes-ls")
        for node in ("master", "secondary1", "secondary2"):
            assert f"{c.project}_{node}-data" in listed, listed
        (appended,) = run("volumes-pyro5")
        assert "'seq':" in appended, appended
        assert c.post("in the backup", w=3, timeout=30).status_code == 201

        run("volumes-backup-tar")
        assert (tmp_path / "secondary1.tar").stat().st_size > 0
        run("volumes-backup-stopped")
        assert list((tmp_path / "secondary1-backup" / "segments").glob("*.log"))
        wait_ready(c)
        assert c.post("after the backup", w=3, timeout=30).status_code == 201
        held = c.messages("master")
        log_id = c.health()["log_id"]

        run("volumes-restore")
        wait_ready(c)
        assert c.messages("master") == held and c.health()["log_id"] == log_id

        run("volumes-fresh")
        wait_ready(c)
        assert c.messages("master") == [] and c.health()["log_id"] != log_id
    finally:
        shell.close()
        print((tmp_path / "transcript.txt").read_text()[-6000:])


def test_adding_secondaries(project):
    """docs/docker.md's secondary3 (profile extra) and docs/security.md's secondary4 with a
    certificate of its own: the master discovers both and counts them."""
    run_block(project, "compose-secondary3")
    run_block(project, "compose-tls-secondary4")
    names = ("secondary1", "secondary2", "secondary3", "secondary4")
    h = project.wait_statuses({n: "Healthy" for n in names}, timeout=120)
    assert h["quorum"]["size"] == 5
    s4 = f"http://127.0.0.1:{project.ports4}/messages"
    wait_until(lambda: project.http.get(s4, timeout=5).json()["messages"]
               == project.messages("master"), 60, what="secondary4 caught up")
