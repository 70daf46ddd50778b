"""Access tokens of the HTTP client API: a file of hashed tokens with roles, and its CLI.

    python -m nodes.tokens add alice --roles append,read --file tokens.json   # prints the token once
    python -m nodes.tokens list --file tokens.json
    python -m nodes.tokens revoke alice --file tokens.json

A node started with `--tokens FILE` (env REPLOG_TOKENS) checks `Authorization: Bearer TOKEN`
on every request (nodes.auth) and reads the file again within RELOAD_EVERY seconds of a
change: adding or revoking a token needs no restart.

The file holds SHA-256 digests, never tokens. A token is 32 random bytes (256 bits) from
`secrets`, so nobody can guess one or search for one whose digest matches: a slow password
hash (bcrypt, scrypt) protects low-entropy passwords and would cost milliseconds on every
request, for nothing here. What the digest does protect against is a leaked file (a backup,
a `cat` in a log, a mounted secret): it lets nobody call the API.

Lookups compare the presented token's digest with every stored digest with
hmac.compare_digest and no early exit, so the time taken says nothing about which bytes
matched (the files are hand-managed: a few dozen entries cost a few microseconds).
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from loguru import logger

ROLES = ("append", "read", "metrics", "admin")
PREFIX = "rlg_"         # every token starts with it: easy to spot in a leaked paste
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
RELOAD_EVERY = 1.0      # seconds between looks at the file (a change is live within 2 s)
ENV = "REPLOG_TOKENS"   # the file, for the CLI and the nodes' --tokens
VERSION = 1


class TokenFileError(Exception):
    pass


@dataclass(frozen=True)
class Token:
    name: str
    roles: frozenset
    digest: bytes       # SHA-256 of the token's text


def new_token() -> str:
    return PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def parse_roles(text: str) -> list[str]:
    roles = sorted({r.strip() for r in text.split(",") if r.strip()})
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise ValueError(f"roles must be a comma list of {', '.join(ROLES)}; got {text!r}")
    return roles


def read_file(path: str | Path) -> list[Token]:
    """The tokens in `path` (TokenFileError when it is not a token file)."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as e:
        raise TokenFileError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise TokenFileError(f"{path} is not JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tokens"), list):
        raise TokenFileError(f"{path} is not a token file (no \"tokens\" list)")
    out = []
    for i, t in enumerate(doc["tokens"]):
        try:
            roles = frozenset(t["roles"])
            if not roles <= set(ROLES):
                raise ValueError(f"unknown role(s) {sorted(roles - set(ROLES))}")
            out.append(Token(str(t["name"]), roles, bytes.fromhex(t["sha256"])))
        except (KeyError, TypeError, ValueError) as e:
            raise TokenFileError(f"{path}: entry {i} is malformed: {e}") from None
    return out


def _entries(path: Path) -> list[dict]:
    if not path.exists():
        return []
    read_file(path)     # validates
    return json.loads(path.read_text())["tokens"]


def _write(path: Path, entries: list[dict]) -> None:
    """Atomically (temp file + rename), mode 0600: the digests are no secret that unlocks
    anything, but nobody else needs to read them either."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"version": VERSION, "tokens": entries}, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One writer at a time (two `add`s at once must not lose one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def add(path: str | Path, name: str, roles: list[str]) -> str:
    """Add a token `name` with `roles` to the file (made if missing); returns the token,
    which is stored nowhere."""
    if not NAME_RE.match(name):
        raise ValueError(f"bad name {name!r}: letters, digits and . _ @ - only, up to 64")
    roles = parse_roles(",".join(roles))
    path = Path(path)
    token = new_token()
    with _locked(path):
        entries = _entries(path)
        if any(e["name"] == name for e in entries):
            raise ValueError(f"{name!r} is already in {path}: revoke it first")
        entries.append({"name": name, "roles": roles, "sha256": digest(token).hex(),
                        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
        _write(path, entries)
    return token


def revoke(path: str | Path, name: str) -> bool:
    path = Path(path)
    with _locked(path):
        entries = _entries(path)
        kept = [e for e in entries if e["name"] != name]
        if len(kept) == len(entries):
            return False
        _write(path, kept)
    return True


class TokenStore:
    """The tokens a node checks, read again from the file when it changes (looked at, at
    most every RELOAD_EVERY s, by the request that finds the last look old enough)."""

    def __init__(self, path: str | Path, reload_every: float = RELOAD_EVERY) -> None:
        self.path = Path(path)
        self.reload_every = reload_every
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._next_look = 0.0
        self.tokens: tuple[Token, ...] = ()
        self.tokens = tuple(read_file(self.path))     # a bad file at start: the caller fails
        self._stamp = self._stat()
        self._next_look = time.monotonic() + reload_every

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def refresh(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now < self._next_look or not self._lock.acquire(blocking=False):
            return
        try:
            self._next_look = now + self.reload_every
            stamp = self._stat()
            if stamp == self._stamp:
                return
            self._stamp = stamp
            if stamp is None:
                # fail closed: a deleted file revokes everything
                logger.error("token file {} is gone: every request is refused until it is back",
                             self.path)
                self.tokens = ()
                return
            try:
                tokens = tuple(read_file(self.path))
            except TokenFileError as e:
                logger.error("token file not reloaded, keeping the {} token(s) read before: {}",
                             len(self.tokens), e)
                return
            old = {t.name for t in self.tokens}
            new = {t.name for t in tokens}
            self.tokens = tokens
            logger.info("token file {} reloaded: {} token(s){}{}", self.path, len(tokens),
                        f", added {sorted(new - old)}" if new - old else "",
                        f", removed {sorted(old - new)}" if old - new else "")
        finally:
            self._lock.release()

    def find(self, token: str) -> Token | None:
        """The entry of `token`, or None; constant time in the token's bytes."""
        self.refresh()
        d = digest(token)
        found = None
        for t in self.tokens:            # no early exit: every entry is compared
            if hmac.compare_digest(t.digest, d):
                found = t
        return found


def _file_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", default=os.environ.get(ENV, ""), required=ENV not in os.environ,
                   help=f"the token file [env {ENV}]")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nodes.tokens",
        description="Manage the access tokens of replog's HTTP API (a node's --tokens FILE). "
                    "The file keeps SHA-256 digests only; a node picks up a change within 2 s.")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("add", help="add a token and print it (once: it is stored nowhere)")
    a.add_argument("name", help="who or what holds it (shown in logs, never the token)")
    a.add_argument("--roles", required=True,
                   help=f"comma list of {', '.join(ROLES)}")
    _file_flag(a)
    ls = sub.add_parser("list", help="names, roles and creation dates")
    _file_flag(ls)
    r = sub.add_parser("revoke", help="remove a token by name")
    r.add_argument("name")
    _file_flag(r)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    path = Path(args.file)
    try:
        if args.command == "add":
            token = add(path, args.name, args.roles.split(","))
            print(f"# token {args.name!r} ({args.roles}) added to {path}; shown only now:",
                  file=sys.stderr)
            print(token)
        elif args.command == "list":
            entries = _entries(path)
            if not entries:
                print(f"no tokens in {path}", file=sys.stderr)
            for e in entries:
                print(f"{e['name']:<24} {','.join(e['roles']):<28} {e.get('created', '')}")
        else:
            if not revoke(path, args.name):
                print(f"no token named {args.name!r} in {path}", file=sys.stderr)
                return 1
            print(f"revoked {args.name!r} (nodes reading {path} refuse it within 2 s)",
                  file=sys.stderr)
    except (ValueError, TokenFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
