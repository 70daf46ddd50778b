"""The image and the compose file, without a running cluster."""
from __future__ import annotations

import json
import time

import pytest

from .conftest import COMPOSE_FILE, ROOT, run

pytestmark = pytest.mark.docker


def test_image_runs_as_non_root_and_has_only_runtime_code(image: str) -> None:
    script = (
        "import json, os, sys, Pyro5, serpent, bottle, loguru, gevent; "
        "print(json.dumps({'uid': os.getuid(), 'cwd': os.getcwd(), 'prefix': sys.prefix, "
        "'unbuffered': os.environ.get('PYTHONUNBUFFERED'), 'app': sorted(os.listdir('/app')), "
        "'versions': [Pyro5.__version__, serpent.__version__, bottle.__version__, "
        "loguru.__version__]}))"
    )
    out = run(["docker", "run", "--rm", "--network", "none", image, "python", "-c", script]).stdout
    info = json.loads(out)
    assert info["uid"] != 0
    assert info["cwd"] == "/app"
    assert info["prefix"] == "/opt/venv"
    assert info["unbuffered"] == "1"
    assert info["app"] == ["examples", "nameserver", "nodes", "replog_cli", "replog_client"]
    assert info["versions"] == ["5.17", "1.43", "0.13.4", "0.7.3"]


@pytest.mark.parametrize("module", ["nameserver", "nodes.master_node", "nodes.secondary_node"])
def test_every_role_starts_from_the_image(image: str, module: str) -> None:
    res = run(["docker", "run", "--rm", "--network", "none", image, "python", "-m", module,
               "--help"])
    assert "usage:" in res.stdout


def test_second_build_is_fast_and_skips_the_base(image: str) -> None:
    t0 = time.monotonic()
    res = run(["bash", str(ROOT / "scripts" / "docker-build.sh"), "--tag", image], timeout=600)
    took = time.monotonic() - t0
    assert "already exists; skipping debootstrap" in res.stderr or "--public-base" in res.stderr
    assert f"built {image}" in res.stdout
    assert took < 120, f"a rebuild with everything cached took {took:.0f}s"


def test_compose_file_is_valid(compose_cmd: list[str]) -> None:
    base = [*compose_cmd, "-f", str(COMPOSE_FILE), "--project-directory", str(ROOT)]
    run([*base, "config", "-q"])
    services = run([*base, "--profile", "extra", "config", "--services"]).stdout.split()
    assert set(services) == {"certs", "nameserver", "master", "secondary1", "secondary2",
                             "secondary3"}
