"""The command blocks of README.md and docs/*.md, by name, and a shell that runs them as
written (issue 20: a block that does not work cannot be published).

A block is named by a marker on the line just before its opening fence:

    <!-- compose-quick-start -->                              run by the test in REGISTRY
    <!-- k8s-apply: not-run: needs a Kubernetes cluster -->   not run here; the reason is shown

Every fenced block whose language is one of COMMAND_LANGS must carry a marker, and every
marker must be in REGISTRY (the test that runs the block, which fetches it by that name) or
say `not-run: <why>`; every fenced block must name a language (`text` for output and
pictures), and no command may hide in an indented code block. tests/unit/test_docblocks.py
checks all of it (`problems()`), also on documents made to break each rule.

Running a block: `console_steps()` splits a console block into commands and the output the
document shows; `sh_commands()` splits a sh block into complete shell commands (a `for ...
done` or a `\\`-continued line is one); `Shell` runs them one after the other in ONE bash
process, as a user pasting them would (variables and the working directory carry over), and
`shown_matches()` compares what a command printed with what the document shows.
"""
from __future__ import annotations

import ast
import os
import queue
import re
import shlex
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
COMMAND_LANGS = {"sh", "bash", "shell", "console", "python"}
MARKER = re.compile(r"^\s*<!--\s*([a-z0-9][a-z0-9-]*)\s*(?::\s*not-run:\s*(.*?))?\s*-->\s*$")

# Every named block and the test that runs it (path::function; the function fetches the
# block by this name). A block marked `not-run: <why>` is not listed here.
REGISTRY = {
    # README.md
    "two-commands": "tests/integration/test_docblocks_local.py::test_readme_two_commands",
    "docker-build": "tests/docker/test_docker_docblocks.py::test_readme_build_and_up",
    "api-example": "tests/integration/test_docblocks_local.py::test_readme_api_session",
    "api-batches": "tests/integration/test_docblocks_local.py::test_readme_api_session",
    "python-client": "tests/integration/test_python_client.py::test_readme_python_client_block_works_as_written",
    "pyro5-example": "tests/integration/test_launcher.py::test_readme_python_example_works_as_written",
    "health-example": "tests/integration/test_docblocks_local.py::test_readme_api_session",
    "walkthrough": "tests/integration/test_launcher.py::test_readme_fault_walkthrough_works_as_written",
    "failover-walkthrough": "tests/integration/test_launcher.py::test_readme_failover_walkthrough_works_as_written",
    "cli-overview": "tests/integration/test_docblocks_local.py::test_readme_cli_overview",
    "swarm-readme": "tests/swarm/test_swarm_docblocks.py::test_readme_swarm_block",
    "tls-readme": "tests/integration/test_docblocks_security.py::test_readme_tls_and_tokens_blocks",
    "tokens-readme": "tests/integration/test_docblocks_security.py::test_readme_tls_and_tokens_blocks",
    # docs/cli.md
    "cli-examples": "tests/integration/test_docblocks_local.py::test_cli_examples",
    "cli-demo-compose": "tests/docker/test_docker_demo.py::test_demo_all_on_the_compose_cluster",
    # docs/configuration.md
    "entry-points": "tests/integration/test_docblocks_local.py::test_configuration_entry_points",
    # docs/docker.md
    "compose-quick-start": "tests/docker/test_docker_docblocks.py::test_quick_start",
    "compose-quick-start-session": "tests/docker/test_docker_docblocks.py::test_quick_start",
    "compose-no-registry": "tests/docker/test_docker_docblocks.py::test_readme_build_and_up",
    "compose-secondary3": "tests/docker/test_docker_docblocks.py::test_adding_secondaries",
    "compose-logs": "tests/docker/test_docker_docblocks.py::test_reading_logs",
    "compose-faults": "tests/docker/test_docker_docblocks.py::test_faults_to_try",
    "compose-partition": "tests/docker/test_docker_docblocks.py::test_faults_to_try",
    # docs/docker-volumes.md
    "volumes-ls": "tests/docker/test_docker_docblocks.py::test_volumes_backup_restore_fresh",
    "volumes-pyro5": "tests/docker/test_docker_docblocks.py::test_volumes_backup_restore_fresh",
    "volumes-backup-tar": "tests/docker/test_docker_docblocks.py::test_volumes_backup_restore_fresh",
    "volumes-backup-stopped": "tests/docker/test_docker_docblocks.py::test_volumes_backup_restore_fresh",
    "volumes-restore": "tests/docker/test_docker_docblocks.py::test_volumes_backup_restore_fresh",
    "volumes-fresh": "tests/docker/test_docker_docblocks.py::test_volumes_backup_restore_fresh",
    # docs/security.md
    "certs-make": "tests/integration/test_docblocks_security.py::test_certificates_and_a_tls_cluster",
    "tls-start": "tests/integration/test_docblocks_security.py::test_certificates_and_a_tls_cluster",
    "tls-add-node": "tests/integration/test_docblocks_security.py::test_certificates_and_a_tls_cluster",
    "certs-renew": "tests/integration/test_docblocks_security.py::test_certificates_and_a_tls_cluster",
    "certs-client": "tests/integration/test_docblocks_security.py::test_certificates_and_a_tls_cluster",
    "pyro5-tls-client": "tests/integration/test_docblocks_security.py::test_certificates_and_a_tls_cluster",
    "pyro5-tls-config": "tests/integration/test_docblocks_security.py::test_certificates_and_a_tls_cluster",
    "compose-tls-secondary4": "tests/docker/test_docker_docblocks.py::test_adding_secondaries",
    "https-master": "tests/integration/test_docblocks_security.py::test_https_and_tokens_blocks",
    "tokens-manage": "tests/integration/test_docblocks_security.py::test_https_and_tokens_blocks",
    # docs/deploy.md
    "swarm-one-host": "tests/swarm/test_swarm_docblocks.py::test_deploy_one_host_block",
    "swarm-reach": "tests/swarm/test_swarm_docblocks.py::test_deploy_one_host_block",
    "swarm-tokens-swap": "tests/swarm/test_swarm_docblocks.py::test_deploy_one_host_block",
    "swarm-pin-master": "tests/swarm/test_swarm_docblocks.py::test_deploy_one_host_block",
    "swarm-failover": "tests/swarm/test_swarm_docblocks.py::test_deploy_failover_block",
    # kubectl and curl stand in (no Kubernetes cluster here): every call checked against the
    # manifests; the certificates and tokens are made for real
    "k8s-failover": "tests/test_deploy_config.py::test_k8s_failover_block_with_kubectl_and_curl_standing_in",
    # docs/performance.md
    "bench-setup": "tests/integration/test_docblocks_local.py::test_bench_setup_line",
    # docs/durability.md
    "durability-data-dir": "tests/integration/test_docblocks_local.py::test_durability_data_dir",
    # docs/failover.md
    "failover-run": "tests/integration/test_docblocks_local.py::test_failover_run",
    "failover-sim": "tests/integration/test_docblocks_local.py::test_failover_sim_lines",
}


@dataclass(frozen=True)
class Block:
    doc: str                 # "README.md", "docs/cli.md"
    line: int                # 1-based line of the opening fence (or first indented line)
    lang: str                # the fence's language ("" when none; always "" when indented)
    text: str
    name: str | None         # the marker's name
    not_run: str | None      # the marker's reason, when the block is not run here
    indented: bool = False

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def is_command(self) -> bool:
        return self.lang.split()[0] in COMMAND_LANGS if self.lang else False


def parse(text: str, doc: str) -> list[Block]:
    """Every fenced and indented code block of a Markdown text (CommonMark, as GitHub reads
    it: a fence inside a list item counts), with the marker on the line before it."""
    lines = text.splitlines()
    found = []
    for tok in MarkdownIt("commonmark").parse(text):
        if tok.type not in ("fence", "code_block"):
            continue
        start = tok.map[0]
        name = reason = None
        if start > 0:
            m = MARKER.match(lines[start - 1])
            if m:
                name, reason = m.group(1), m.group(2)
        found.append(Block(doc, start + 1, tok.info.strip(), tok.content, name, reason,
                           tok.type == "code_block"))
    return found


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def all_blocks() -> list[Block]:
    return [b for p in documents() for b in parse(p.read_text(), str(p.relative_to(ROOT)))]


def block(name: str) -> Block:
    """The one block with this marker (fails loudly when there is none or several)."""
    named = [b for b in all_blocks() if b.name == name]
    assert len(named) == 1, f"{len(named)} blocks are named {name!r}: {[b.where for b in named]}"
    return named[0]


# --- the meta-check ------------------------------------------------------------------------

def looks_like_commands(text: str) -> bool:
    """An indented block that holds shell commands (a prompt, or a line starting with a
    command this project's documents use)."""
    first = re.compile(r"^(\$ |\.?\.venv/bin/|python3? -m |bash |docker(-compose)? |kubectl |curl |"
                       r"replog |scripts/|deploy/|seq |for |while |export |cd |cat |git )")
    return any(first.match(line.strip()) for line in text.splitlines())


def registered_tests_mention(registry: dict[str, str], root: Path = ROOT) -> list[str]:
    """Problems with the registry itself: a test that does not exist, or whose function does
    not mention the block's name (so it does not fetch that block)."""
    out = []
    sources: dict[str, ast.Module | None] = {}
    for name, target in sorted(registry.items()):
        path, _, func = target.partition("::")
        if path not in sources:
            f = root / path
            sources[path] = ast.parse(f.read_text()) if f.exists() else None
        tree = sources[path]
        if tree is None:
            out.append(f"{name}: the registered test file {path} does not exist")
            continue
        fn = next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
                   and n.name == func), None)
        if fn is None:
            out.append(f"{name}: {path} has no test function {func}")
            continue
        strings = {n.value for n in ast.walk(fn) if isinstance(n, ast.Constant)}
        if name not in strings:
            out.append(f"{name}: {target} does not fetch the block (no string {name!r} in it)")
    return out


def problems(blocks: list[Block], registry: dict[str, str] = REGISTRY,
             check_tests: bool = True) -> list[str]:
    """Every way the documents break the rule that each command block is run by a test."""
    out = []
    names: dict[str, list[str]] = {}
    for b in blocks:
        if b.name:
            names.setdefault(b.name, []).append(b.where)
        if b.indented:
            if looks_like_commands(b.text):
                out.append(f"{b.where}: commands in an indented block: make it a fenced "
                           "```sh or ```console block with a <!-- name --> marker")
            continue
        if not b.lang:
            out.append(f"{b.where}: a fence without a language: say ```sh/```console (commands, "
                       "with a marker) or ```text (output, a picture)")
            continue
        if not b.is_command:
            continue
        if b.name is None:
            out.append(f"{b.where}: a {b.lang} block without a <!-- name --> marker on the line "
                       "before it")
        elif b.not_run is not None:
            if not b.not_run.strip():
                out.append(f"{b.where}: {b.name} is marked not-run without a reason")
            elif b.name in registry:
                out.append(f"{b.where}: {b.name} is marked not-run but registered as run by "
                           f"{registry[b.name]}")
        elif b.name not in registry:
            out.append(f"{b.where}: {b.name} is run by no test (add it to REGISTRY in "
                       "tests/docblocks.py with the test that runs it, or mark it not-run: why)")
    for name, wheres in names.items():
        if len(wheres) > 1:
            out.append(f"{name}: the same marker on several blocks: {', '.join(wheres)}")
    for name in sorted(set(registry) - set(names)):
        out.append(f"{name}: registered ({registry[name]}) but no block has this marker")
    if check_tests:
        out += registered_tests_mention(registry)
    return out


# --- reading a block -----------------------------------------------------------------------

COMMENT = re.compile(r"\s{2,}#\s.*$")


@dataclass
class Step:
    command: str
    shown: str | None      # the output the document shows (None: none)


def console_steps(b: Block) -> list[Step]:
    """`$ command` lines (a trailing backslash continues one) and the lines after each, up
    to the next prompt: what the document shows it printing (comments after two spaces and
    a `#` dropped)."""
    steps: list[Step] = []
    cont = False
    for line in b.text.rstrip("\n").splitlines():
        if cont:
            steps[-1].command += "\n" + line
            cont = line.endswith("\\")
        elif line.startswith("$ "):
            steps.append(Step(line[2:], None))
            cont = line.endswith("\\")
        elif steps:
            shown = COMMENT.sub("", line).rstrip()
            steps[-1].shown = shown if steps[-1].shown is None else steps[-1].shown + "\n" + shown
    for s in steps:
        if s.shown is not None and not s.shown.strip():
            s.shown = None
    return steps


def sh_commands(b: Block) -> list[str]:
    """The block's complete shell commands, in order (blank and comment-only lines dropped;
    a command is complete once `bash -n` accepts it)."""
    commands, pending = [], ""
    for line in b.text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending = f"{pending}\n{line}" if pending else line
        if pending.endswith("\\"):
            continue
        ok = subprocess.run(["bash", "-n", "-c", pending], capture_output=True).returncode == 0
        if ok:
            commands.append(pending)
            pending = ""
    assert not pending, f"{b.where}: an incomplete command at the end: {pending!r}"
    return commands


def bare(command: str) -> str:
    """The command without its trailing comment (for finding a step by its text)."""
    return COMMENT.sub("", command).strip()


def normalize(text: str) -> str:
    """Whitespace runs as one space, and none just inside brackets (json.tool's layout and a
    document's wrapped one compare equal)."""
    text = " ".join(text.split())
    return re.sub(r"\s+([\]}])", r"\1", re.sub(r"([\[{])\s+", r"\1", text))


def shown_matches(actual: str, shown: str | None) -> bool:
    """The real output must begin as the document shows it, whitespace aside (a shown JSON
    object may be wrapped over lines), '...' standing for any text."""
    if shown is None:
        return True
    pattern = ".*?".join(map(re.escape, normalize(shown).split("...")))
    return re.match(pattern, normalize(actual), re.S) is not None


def substitute(command: str, ports: dict[int, int]) -> str:
    """The document's port numbers (5000, 9090, ...) replaced by the test's free ones: the
    only change a test makes to a command, where the documents tell a user to choose them."""
    if not ports:
        return command
    alternation = "|".join(str(p) for p in sorted(ports, reverse=True))
    return re.sub(rf"(?<![\d.])({alternation})(?!\d)", lambda m: str(ports[int(m.group(1))]),
                  command)


# --- running a block -----------------------------------------------------------------------

# `docker compose` where only docker-compose 1.29 is installed: the documents say to type
# `docker-compose` there, "the arguments are the same"; this shell function does so.
COMPOSE_SHIM = r"""
if ! command docker compose version >/dev/null 2>&1 && command -v docker-compose >/dev/null; then
  docker() { if [ "$1" = compose ]; then shift; command docker-compose "$@"; else command docker "$@"; fi; }
  export -f docker
fi
"""


class Shell:
    """One bash process fed one command at a time, as a user pasting a block would: the
    project's virtual environment is active (`source .venv/bin/activate`, as the documents
    say), variables and the working directory carry over, and standard error goes where
    standard output goes (the terminal). Every command reads /dev/null as its input."""

    def __init__(self, cwd: Path, env: dict[str, str] | None = None,
                 transcript: Path | None = None) -> None:
        venv = ROOT / ".venv"
        full = dict(os.environ if env is None else env)
        full["VIRTUAL_ENV"] = str(venv)
        full["PATH"] = f"{venv / 'bin'}:{full.get('PATH', '/usr/bin:/bin')}"
        full.pop("PYTHONHOME", None)
        full["TERM"] = "dumb"
        self.env = full
        self.proc = subprocess.Popen(["bash", "--noprofile", "--norc"], cwd=cwd, env=full,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1,
                                     start_new_session=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.transcript = transcript.open("a") if transcript else None
        self.started: list[int] = []
        self.run(COMPOSE_SHIM)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, command: str, timeout: float = 120,
            during: Callable[[], None] | None = None) -> tuple[int, str]:
        """(exit status, what it printed). `during` is called once the command has started
        (something a user does meanwhile, elsewhere)."""
        token = f"__docblock_{uuid.uuid4().hex}__"
        self.proc.stdin.write(f"{{ {command}\n}} </dev/null 2>&1; printf '\\n{token} %s\\n' $?\n")
        self.proc.stdin.flush()
        if during is not None:
            time.sleep(0.5)
            during()
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no end within {timeout} s of: {command}\n"
                                     f"printed so far:\n{''.join(out)[-3000:]}") from None
            if line is None:
                raise AssertionError(f"the shell ended during: {command}\n{''.join(out)}")
            if line.startswith(token):
                text = "".join(out)
                text = text[:-1] if text.endswith("\n") else text
                if self.transcript:
                    self.transcript.write(f"$ {command}\n{text}\n[exit {line.split()[1]}]\n")
                    self.transcript.flush()
                return int(line.split()[1]), text
            out.append(line)

    def check(self, command: str, timeout: float = 120, shown: str | None = None,
              during: Callable[[], None] | None = None) -> str:
        """Run it; it must exit 0 and print what the document shows."""
        rc, out = self.run(command, timeout, during)
        assert rc == 0, f"exit {rc}: {command}\n{out[-4000:]}"
        assert shown_matches(out, shown), f"{command}\nprinted:\n{out}\nthe document shows:\n{shown}"
        return out

    def until_interrupted(self, command: str, seconds: float,
                          during: Callable[[], None] | None = None) -> tuple[int, str]:
        """A command that runs until Ctrl-C (`-f`, a stream, a launcher): Ctrl-C after
        `seconds` (SIGINT to its process group, as a terminal sends it); what it printed."""
        return self.run(f"timeout -s INT {seconds} bash -c {shlex.quote(command)}",
                        timeout=seconds + 60, during=during)

    def background(self, command: str, log: Path, env: dict[str, str] | None = None) -> int:
        """A command a user starts in a terminal of its own (a node): started in the
        background, its output in `log`, `env` (REPLOG_* fallbacks of its flags, e.g. its
        port) before it. Returns its pid; stop it with stop()."""
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        rc, out = self.run(f"{prefix} {bare(command)} > {shlex.quote(str(log))} 2>&1 & echo $!")
        assert rc == 0, out
        pid = int(out.split()[-1])
        self.started.append(pid)
        return pid

    def stop(self, *pids: int) -> None:
        """SIGTERM (every entry point stops cleanly on it) and wait; all started ones when
        no pid is given."""
        pids = pids or tuple(self.started)
        for pid in pids:
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        for pid in pids:
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() and \
                    Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
                time.sleep(0.1)
            if Path(f"/proc/{pid}").exists():
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            if pid in self.started:
                self.started.remove(pid)

    def close(self) -> None:
        self.stop()
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("exit\n")
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        if self.transcript:
            self.transcript.close()


def run_console(shell: Shell, b: Block, ports: dict[int, int] | None = None,
                interrupt: dict[str, float] | None = None,
                during: dict[str, Callable[[], None]] | None = None,
                retry: dict[str, float] | None = None) -> list[str]:
    """Every step of a console block: exit 0 (or Ctrl-C'd) and the output the document
    shows. interrupt: {text in a command: seconds before its Ctrl-C}; during: {text in a
    command: what happens elsewhere while it runs}; retry: {text in a command: seconds for
    which to run it again until it prints what is shown (a state still settling)}."""
    outs = []
    for step in console_steps(b):
        command = substitute(step.command, ports or {})
        key = lambda table: next((v for k, v in (table or {}).items() if k in step.command), None)
        if (secs := key(interrupt)) is not None:
            rc, out = shell.until_interrupted(command, secs, during=key(during))
            assert rc in (0, 124, 130), f"exit {rc}: {command}\n{out}"
            assert shown_matches(out, step.shown), f"{command}\nprinted:\n{out}\nshown:\n{step.shown}"
        elif (secs := key(retry)) is not None:
            deadline = time.monotonic() + secs
            while True:
                rc, out = shell.run(command)
                if rc == 0 and shown_matches(out, step.shown) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert rc == 0 and shown_matches(out, step.shown), \
                f"exit {rc}: {command}\nprinted:\n{out}\nshown:\n{step.shown}"
        else:
            out = shell.check(command, shown=step.shown, during=key(during))
        outs.append(out)
    return outs
