"""python -m nodes.launcher: flags, the pre-flight check of ports, and the watch loop."""
from __future__ import annotations

import os
import signal
import time
from typing import Any, Callable

from .procs import ROOT
from .supervisor import Launcher


def _env_flag(p: Any, flag: str, env: str, type: Callable[[str], Any], default: Any,
              help: str, **kw: Any) -> None:
    if env in os.environ:
        default = type(os.environ[env])
    p.add_argument(flag, type=type, default=default, help=f"{help} [env {env}]", **kw)


def parser() -> Any:
    from ..config import Parser
    p = Parser(prog="python -m nodes.launcher",
               description="Start a name server, a master and N secondaries as local processes. "
                           "When a node dies or is paused the cluster runs on: the launcher logs "
                           "it and prints the command that starts the node again (or, with "
                           "--restart always, starts it itself). Ctrl-C stops them all.")
    # REPLOG_SECONDARIES is the master's list of names, so the count has its own variable
    _env_flag(p, "--secondaries", "REPLOG_SECONDARIES_COUNT", int, 2, "how many secondaries")
    p.flag("--base-port", type=int, default=5000,
           help="master's HTTP port; secondary i gets base+i")
    p.flag("--ns-port", type=int, default=9090, help="name server port")
    p.flag("--delay", type=float, default=0.0,
           help="--delay of the last secondary, to watch blocking replication")
    p.flag("--log-level", default="INFO", help="log level of every node")
    p.flag("--data-root", default=str(ROOT / ".replog-data"),
           help="folder of the nodes' data directories (DATA_ROOT/NAME), the restart "
                "commands (commands.sh) and pid files (NAME.pid)")
    p.switch("--fresh", help="delete DATA_ROOT first: start with empty logs")
    p.flag("--restart", default="no", choices=["no", "always"],
           help="no: a node that exits stays down (the launcher prints the command that "
                "starts it again); always: the launcher starts it again")
    _env_flag(p, "--certs", "REPLOG_CERTS_OUT", str, "",
              "run the node plane over mutual TLS with the certificates in CERTS/NAME (what is "
              "missing is made, as python -m nodes.certs --out CERTS would); empty: plain TCP")
    p.switch("--https", help="every node serves HTTPS with its certificate from --certs (or "
                             "DATA_ROOT/https-certs); made if missing")
    p.flag("--tokens", default="",
           help="every node checks this token file (python -m nodes.tokens); the launcher "
                "adds a token 'launcher' (role read) for its readiness checks")
    p.switch("--failover", help="every node is started with --failover and --cluster master,"
                                "secondary1,...: any of them may become master. The launcher "
                                "logs each election and who won (from every node's /health), "
                                "and its table shows which node is master; a killed master "
                                "started again rejoins as a secondary (docs/failover.md)")
    p.flag("--restart-delay", type=float, default=1.0,
           help="seconds before a restart; doubles (up to 30) while a node keeps dying "
                "within 10 s of its start")
    return p


def main(argv: list[str] | None = None) -> None:
    from .. import logs
    args = parser().parse_args(argv)
    if args.restart_delay < 0 or args.secondaries < 0:
        parser().error("--restart-delay and --secondaries must be >= 0")
    logs.setup("launcher", args.log_level)
    launcher = Launcher(args)
    problems = launcher.preflight()
    if problems:
        for line in problems[:-1]:
            launcher.log.error("cannot start: {}", line)
        launcher.log.error("{}", problems[-1])
        raise SystemExit(1)

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # explicit, because a shell starting us in the background may have ignored SIGINT
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    status = 0
    try:
        launcher.start()
        while True:
            launcher.check(time.monotonic())
            time.sleep(0.25)
    except KeyboardInterrupt:
        launcher.log.info("stopping every node")
    except (RuntimeError, TimeoutError) as e:   # a node did not come up
        launcher.log.error("cannot start the cluster: {}", e)
        status = 1
    finally:
        launcher.close()
    raise SystemExit(status)
