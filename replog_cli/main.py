"""`replog`: the command-line client of the replicated log.

    replog append "hello world" -w 2          # one message; prints seq, acks, time taken
    seq 200 | replog append -                  # one message per line, with a progress bar
    replog list [--node secondary1|URL] [--from 10 --limit 5]
    replog tail [-f] [--from SEQ] [--node URL]  # the last messages; -f: as they come
    replog health | replog nodes | replog watch
    replog demo iteration1|iteration2|iteration3|faults|all

Talks HTTP to the master (--master, env REPLOG_MASTER); `list --node NAME` and `nodes` ask
the Pyro5 name server (--ns-host/--ns-port, env REPLOG_NS_HOST/REPLOG_NS_PORT). Exit
status: 0 done, 1 refused or no answer (the server's message is printed), 2 bad usage.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from . import format as fmt
from .client import ClientError, Http

DEFAULT_MASTER = "http://127.0.0.1:5000"
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# piped output (scripts, CI logs) is not cut at 80 columns
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)


def fail(message: str) -> NoReturn:
    err.print(Text(f"replog: {message}", style="bold red"))
    sys.exit(1)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=None))


def master_option(f):
    """--master on the command (`replog health --master URL`); the group's own --master
    (`replog --master URL health`) counts when the command's was not given."""
    def use_group_master(ctx: click.Context, param: click.Parameter, value: str) -> str:
        given = ctx.get_parameter_source(param.name) == click.core.ParameterSource.COMMANDLINE
        group = (ctx.parent.params.get("master") if ctx.parent else None)
        return value if given or not group else group
    return click.option("--master", "master", envvar="REPLOG_MASTER", default=DEFAULT_MASTER,
                        show_default=True, show_envvar=True, callback=use_group_master,
                        help="the master's HTTP URL")(f)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, envvar="REPLOG_JSON",
                        show_envvar=True, help="print JSON for scripts instead of text")(f)


def ns_options(f):
    f = click.option("--ns-port", type=int, envvar="REPLOG_NS_PORT", default=9090,
                     show_default=True, show_envvar=True, help="name server port")(f)
    return click.option("--ns-host", envvar="REPLOG_NS_HOST", default="127.0.0.1",
                        show_default=True, show_envvar=True, help="name server host")(f)


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="replog", prog_name="replog")
@click.option("--master", "master", metavar="URL",
              help="the master's HTTP URL for any command (or give it after the command) "
                   "[env var: REPLOG_MASTER; default: " + DEFAULT_MASTER + "]")
@click.option("--token", metavar="TOKEN", envvar="REPLOG_TOKEN", show_envvar=True,
              help="access token for nodes started with --tokens (python -m nodes.tokens add)")
@click.option("--token-file", metavar="FILE", envvar="REPLOG_TOKEN_FILE", show_envvar=True,
              help="read the access token from the first line of FILE")
@click.option("--ca", metavar="FILE", envvar="REPLOG_CA", show_envvar=True,
              help="CA certificate that HTTPS nodes' certificates chain to (e.g. certs/ca.crt)")
def cli(master: str | None, token: str | None, token_file: str | None,
        ca: str | None) -> None:
    """The replicated log from the command line: append, read, watch health, run the
    assignment's scenarios as narrated demos."""
    # Every HTTP client this process makes (replog_client.Client) reads these.
    for name, value in (("REPLOG_TOKEN", token), ("REPLOG_TOKEN_FILE", token_file),
                        ("REPLOG_CA", ca)):
        if value:
            os.environ[name] = value
    # Ctrl-C and `kill` stop every command, even when the shell that started us in the
    # background left SIGINT ignored (Python then installs no handler of its own)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


# -- append -------------------------------------------------------------------------------
@cli.command(context_settings=CONTEXT)
@click.argument("text", nargs=-1)
@click.option("-w", "w", type=int, envvar="REPLOG_W", show_envvar=True,
              help="write concern: nodes (the master included) that must hold the message "
                   "before the answer [default: all]")
@click.option("--timeout", type=float, envvar="REPLOG_TIMEOUT", show_envvar=True,
              help="seconds the master may wait for the write concern (then 504)")
@click.option("--id", "key", envvar="REPLOG_ID", show_envvar=True,
              help="idempotency key: the same id appends once, however often it is sent")
@click.option("--file", "file", type=click.File("r", encoding="utf-8"), envvar="REPLOG_FILE",
              show_envvar=True, help="append every line of this file ('-': standard input)")
@click.option("-c", "--concurrency", type=click.IntRange(1, 256), default=1, show_default=True,
              envvar="REPLOG_CONCURRENCY", show_envvar=True,
              help="POSTs in flight for lines; above 1 the lines' order in the log may differ")
@click.option("--batch", type=click.IntRange(1, 10_000), default=1000, show_default=True,
              envvar="REPLOG_BATCH", show_envvar=True,
              help="lines per POST for lines (one request, one wait); 1: a POST per line")
@click.option("--http-timeout", type=float, default=120.0, show_default=True,
              envvar="REPLOG_HTTP_TIMEOUT", show_envvar=True,
              help="seconds to wait for the master's answer")
@master_option
@json_option
def append(text: tuple[str, ...], w: int | None, timeout: float | None, key: str | None,
           file, concurrency: int, batch: int, http_timeout: float, master: str,
           as_json: bool) -> None:
    """Append TEXT (the words joined by spaces, like echo) as one message; print its seq,
    its acks and the time it took. `replog append -` (or --file F) appends every line of
    standard input (of F) as one message, in batches of --batch lines, with a progress bar
    and the final rate."""
    if text == ("-",) and file is None:
        file = click.get_text_stream("stdin")
    if file is not None:
        if text and text != ("-",):
            raise click.UsageError("give TEXT or --file/-, not both")
        if key is not None:
            raise click.UsageError("--id names one message; it cannot go with --file/-")
        _append_lines(file, w, timeout, concurrency, batch, http_timeout, master, as_json)
        return
    if not text:
        raise click.UsageError("nothing to append: give TEXT, or - to read standard input")
    try:
        reply = Http(master).append(" ".join(text), w, timeout, key, http_timeout)
    except ClientError as e:
        if as_json and e.body is not None:
            emit_json({"status": e.status, **(e.body if isinstance(e.body, dict) else {})})
        fail(e.message)
    if as_json:
        emit_json({**reply.body, "seconds": round(reply.seconds, 6)})
    else:
        out.print(fmt.append_line(reply.body, reply.seconds))


def _old_master(e: ClientError) -> bool:
    """A master from before batches refuses the field 'messages' as unknown."""
    body = e.body if isinstance(e.body, dict) else {}
    return (e.status == 400 and "index" not in body
            and "unknown field" in str(body.get("error")) and "'messages'" in str(body))


def _append_lines(file, w, timeout, concurrency, batch, http_timeout, master, as_json) -> None:
    lines = [line.rstrip("\r\n") for line in file]
    skipped = sum(1 for line in lines if not line)
    lines = [line for line in lines if line]
    local = threading.local()
    lock = threading.Lock()
    first_error: list[tuple[int, str, str]] = []    # (line index, 'line N', server's message)
    per_line = [batch == 1]                    # also when the master takes no batches

    def http() -> Http:
        if not hasattr(local, "http"):
            local.http = Http(master, timeout=http_timeout)
        return local.http

    def refused(line_index: int, label: str, e: ClientError) -> ClientError:
        with lock:
            first_error.append((line_index, label, e.message))
        return e

    def send(start: int, chunk: list[str]) -> None:
        if first_error:
            return
        if not per_line[0]:
            try:
                http().append_many(chunk, w, timeout)
                progress.advance(task, len(chunk))
                return
            except ClientError as e:
                if not _old_master(e):
                    index = e.body.get("index") if isinstance(e.body, dict) else None
                    index = index if isinstance(index, int) else None
                    raise refused(start + (index or 0),
                                  fmt.lines_label(start, len(chunk), index), e) from None
                with lock:
                    if not per_line[0]:
                        per_line[0] = True
                        err.print(Text("replog: this master takes no batches: one POST per "
                                       "line", style="dim"))
        for i, line in enumerate(chunk):
            try:
                http().append(line, w, timeout)
            except ClientError as e:
                raise refused(start + i, fmt.lines_label(start + i, 1), e) from None
            progress.advance(task)

    t0 = time.perf_counter()
    progress = Progress(TextColumn("appending"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err, disable=as_json)
    with progress:
        task = progress.add_task("append", total=len(lines))
        chunks = fmt.batches(lines, batch)
        if concurrency == 1:
            for start, chunk in chunks:
                try:
                    send(start, chunk)
                except ClientError:
                    break
        else:
            with ThreadPoolExecutor(concurrency) as pool:
                futures = [pool.submit(send, start, chunk) for start, chunk in chunks]
                wait(futures, return_when=FIRST_EXCEPTION)
                for f in futures:
                    f.cancel()
    seconds = time.perf_counter() - t0
    appended = int(progress.tasks[0].completed)
    _, label, error = min(first_error) if first_error else (0, "", None)
    if as_json:
        emit_json({"appended": appended, "skipped_empty": skipped, "seconds": round(seconds, 6),
                   "error": error})
    else:
        out.print(f"appended {fmt.rate(appended, seconds)}"
                  + (f"; {skipped} empty line(s) skipped" if skipped else ""))
    if error:
        fail(f"{label}: {error} ({appended} of {len(lines)} appended)")


# -- list ---------------------------------------------------------------------------------
@cli.command("list", context_settings=CONTEXT)
@click.option("--node", envvar="REPLOG_NODE", show_envvar=True,
              help="read from this node instead of the master: a URL (http://host:port), "
                   "host:port, or a secondary's NAME (found in the Pyro5 name server)")
@click.option("--from", "first", type=click.IntRange(min=1),
              help="first seq to show (paged read)")
@click.option("--limit", type=click.IntRange(1, 10_000), help="most messages to show")
@master_option
@ns_options
@json_option
def list_(node: str | None, first: int | None, limit: int | None, master: str, ns_host: str,
          ns_port: int, as_json: bool) -> None:
    """Print the log as a node shows it: seq and message, one a line."""
    target = fmt.parse_node(node)
    try:
        if target.kind == "name":
            page = _pyro_messages(target.value, ns_host, ns_port, first, limit)
        else:
            page = Http(master if target.kind == "master" else target.value).messages(first, limit)
    except ClientError as e:
        fail(e.message)
    if as_json:
        emit_json(page)
        return
    start = page.get("from", 1)
    messages = page["messages"]
    for i, message in enumerate(messages):
        out.print(Text(f"{start + i:>6}  ") + Text(str(message)))
    where = target.value if target.kind != "master" else master
    err.print(Text(f"{len(messages)} message(s) from {where}", style="dim"))


def _locate_ns(ns_host: str, ns_port: int, timeout: float = 5.0):
    import Pyro5.api
    import Pyro5.errors
    from Pyro5 import config
    config.COMMTIMEOUT = timeout
    try:
        ns = Pyro5.api.locate_ns(ns_host, ns_port)
        ns._pyroTimeout = timeout
        return ns
    except Pyro5.errors.PyroError as e:
        raise ClientError(f"no name server at {ns_host}:{ns_port} ({e}); "
                          f"set --ns-host/--ns-port") from None


def _pyro_messages(name: str, ns_host: str, ns_port: int, first: int | None,
                   limit: int | None) -> dict:
    """A secondary's log by its registered name: the master knows no secondary's HTTP URL,
    so ask the name server where it is and read over Pyro5 (what GET /messages returns)."""
    import Pyro5.api
    import Pyro5.errors
    pyro_name = "replog.secondary." + name
    try:
        with _locate_ns(ns_host, ns_port) as ns:
            uri = ns.list(prefix=pyro_name).get(pyro_name)
        if uri is None:
            raise ClientError(f"no node named {name!r} in the name server at "
                              f"{ns_host}:{ns_port}; see `replog nodes`, or give a URL")
        with Pyro5.api.Proxy(uri) as p:
            p._pyroTimeout = 10.0
            messages = p.messages()
    except Pyro5.errors.PyroError as e:
        raise ClientError(f"{name} did not answer over Pyro5: {e}") from None
    if first is None and limit is None:
        return {"messages": messages}
    first = first or 1
    page = messages[first - 1:first - 1 + (limit or 1000)]
    return {"messages": page, "from": first, "next": first + len(page)}


# -- tail ---------------------------------------------------------------------------------
@cli.command(context_settings=CONTEXT)
@click.option("-f", "--follow", is_flag=True,
              help="keep printing messages as they are appended, until Ctrl-C; resumes "
                   "where it stopped when the node restarts or the connection breaks")
@click.option("--from", "first", type=click.IntRange(min=1),
              help="first seq to show [default: the last --lines]")
@click.option("-n", "--lines", "count", type=click.IntRange(min=0), default=10,
              show_default=True, help="without --from: how many of the last messages to show")
@click.option("--node", metavar="URL", envvar="REPLOG_NODE", show_envvar=True,
              help="read from this node (http://host:port or host:port) first; the master "
                   "is the fallback")
@master_option
@json_option
def tail(follow: bool, first: int | None, count: int, node: str | None, master: str,
         as_json: bool) -> None:
    """Print the last messages with their seqs; -f: follow the log as it grows.

    Without --from, the last --lines messages; -f then prints every new one as it is
    appended (over the node's event stream), until Ctrl-C, and resumes without a gap or a
    repeat when the node restarts or the connection breaks."""
    from replog_client import Client, ReplogError

    def show(seq: int, message: str) -> None:
        if as_json:
            emit_json({"seq": seq, "message": message})
        else:
            out.print(Text(f"{seq:>6}  ") + Text(str(message)))

    urls = [node, master] if node else [master]
    try:
        client = Client(list(dict.fromkeys(urls)))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--node/--master") from None
    try:
        with client:
            if first is None:
                h = client.health()
                last = h.get("last_seq", h.get("messages", 0)) or 0
                first = max(1, last - count + 1)
            if follow:
                for entry in client.follow(from_seq=first):
                    show(entry.seq, entry.message)
                return
            while True:
                page = client.read(from_seq=first, limit=1000)
                for entry in page.entries():
                    show(entry.seq, entry.message)
                if not page.messages:
                    return
                first = page.next
    except ReplogError as e:
        fail(e.message)
    except KeyboardInterrupt:
        pass


# -- health, watch ------------------------------------------------------------------------
def health_table(h: dict, title: str | None = None) -> Table:
    table = Table(title=title, caption=Text(fmt.quorum_line(h)), caption_justify="left")
    for column, justify in (("node", "left"), ("status", "left"), ("acked seq", "right"),
                            ("lag", "right"), ("last answer", "right")):
        table.add_column(column, justify=justify)
    for row in fmt.health_rows(h):
        table.add_row(Text(row.node), Text(row.status, style=fmt.STATUS_STYLE.get(row.status, "")),
                      "-" if row.acked_seq is None else str(row.acked_seq),
                      "-" if row.lag is None else str(row.lag), row.last_answer)
    return table


@cli.command(context_settings=CONTEXT)
@master_option
@json_option
def health(master: str, as_json: bool) -> None:
    """The master's view of the cluster: each node's status, acked seq, lag and last answer,
    the quorum, and whether the master is read-only."""
    try:
        h = Http(master).health()
    except ClientError as e:
        fail(e.message)
    if as_json:
        emit_json(h)
    else:
        out.print(health_table(h))


@cli.command(context_settings=CONTEXT)
@click.option("--interval", type=click.FloatRange(0.05), default=0.5, show_default=True,
              envvar="REPLOG_INTERVAL", show_envvar=True, help="seconds between redraws")
@click.option("--count", type=click.IntRange(min=1), envvar="REPLOG_COUNT",
              show_envvar=True, help="stop after this many redraws [default: until Ctrl-C]")
@master_option
@json_option
def watch(interval: float, count: int | None, master: str, as_json: bool) -> None:
    """Redraw health and lag live until Ctrl-C (--json: one JSON line per look)."""
    http = Http(master, timeout=max(2.0, interval * 4), retries=0)   # each look on time

    def look() -> tuple[dict | None, str]:
        try:
            return http.health(), ""
        except ClientError as e:
            return None, e.message

    def view(h: dict | None, problem: str):
        stamp = time.strftime("%H:%M:%S")
        if h is None:
            return Text(f"{stamp}  {master}: {problem}", style="red")
        return health_table(h, title=f"{master} at {stamp} (Ctrl-C stops)")

    n = 0
    try:
        if as_json:
            while count is None or n < count:
                h, problem = look()
                emit_json({"time": time.time(), "health": h, "error": problem or None})
                n += 1
                if count is None or n < count:
                    time.sleep(interval)
            return
        with Live(view(*look()), console=out, auto_refresh=False) as live:
            n = 1
            while count is None or n < count:
                time.sleep(interval)
                live.update(view(*look()), refresh=True)
                n += 1
    except KeyboardInterrupt:
        pass


# -- nodes --------------------------------------------------------------------------------
@cli.command(context_settings=CONTEXT)
@ns_options
@json_option
def nodes(ns_host: str, ns_port: int, as_json: bool) -> None:
    """The nodes registered in the Pyro5 name server (replog.master, replog.secondary.*)."""
    import Pyro5.errors
    try:
        with _locate_ns(ns_host, ns_port) as ns:
            registered = ns.list(prefix="replog.")
    except ClientError as e:
        fail(e.message)
    except Pyro5.errors.PyroError as e:
        fail(f"the name server at {ns_host}:{ns_port} did not answer: {e}")
    if as_json:
        emit_json(registered)
        return
    table = Table(caption=f"name server {ns_host}:{ns_port}", caption_justify="left")
    table.add_column("name")
    table.add_column("Pyro5 URI")
    for name, uri in sorted(registered.items()):
        table.add_row(Text(name), Text(str(uri)))
    out.print(table)


def _register_demo() -> None:
    from .demo import demo
    cli.add_command(demo)


_register_demo()


if __name__ == "__main__":
    cli()
