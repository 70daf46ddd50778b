"""Iteration 0: call the echo server through a proxy found in the name server."""
from __future__ import annotations

import argparse

import Pyro5.api

from .server import NAME


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m examples.echo.client",
                                description="Send a text to the Pyro5 echo server, print the answer.")
    p.add_argument("text", nargs="?", default="hello", help="what to send")
    p.add_argument("--ns-host", default="127.0.0.1", help="name server host")
    p.add_argument("--ns-port", type=int, default=9090, help="name server port")
    args = p.parse_args(argv)
    with Pyro5.api.Proxy(f"PYRONAME:{NAME}@{args.ns_host}:{args.ns_port}") as echo:
        echo._pyroTimeout = 10
        print(echo.echo(args.text))


if __name__ == "__main__":
    main()
