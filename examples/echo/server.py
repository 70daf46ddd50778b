"""Iteration 0: a Pyro5 echo server registered in the name server as `example.echo`.

    python -m nameserver &                  # or: python -m Pyro5.nameserver
    python -m examples.echo.server
    python -m examples.echo.client "hello"
"""
from __future__ import annotations

import argparse

import Pyro5.api

NAME = "example.echo"


@Pyro5.api.expose
class Echo:
    def echo(self, text: str) -> str:
        """Blocking remote call: the return value travels back to the caller."""
        return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m examples.echo.server",
                                description="A Pyro5 echo server (iteration 0).")
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument("--ns-host", default="127.0.0.1", help="name server host")
    p.add_argument("--ns-port", type=int, default=9090, help="name server port")
    args = p.parse_args(argv)
    daemon = Pyro5.api.Daemon(host=args.host)
    uri = daemon.register(Echo, objectId=NAME)
    Pyro5.api.locate_ns(args.ns_host, args.ns_port).register(NAME, uri, safe=False)
    print(f"echo server ready at {uri}", flush=True)
    daemon.requestLoop()


if __name__ == "__main__":
    main()
