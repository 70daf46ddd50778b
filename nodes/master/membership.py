"""Which secondaries the master replicates to: the ones named at start, plus those found
registered in the name server (with TLS, only once the endpoint showed the right
certificate), less those that left on purpose (see MasterState.departed).

    tick   every discovery interval: list the registrations, vet and record them, forget
           the departed; every half heartbeat interval: let the state machine report health
           transitions and a change of mode."""
from __future__ import annotations

from typing import Callable

from loguru import logger

from ..names import SECONDARY_PREFIX
from .shell import Shell


class Membership:
    def __init__(self, shell: Shell, on_change: Callable[[str], None]) -> None:
        self.shell = shell
        self._on_change = on_change    # a secondary is new, moved or gone: (re)serve it
        # name -> (uri, why it is refused, "" if not): only each name's latest registration,
        # so a node re-registering at ever new ports costs nothing that grows
        self._vetted: dict[str, tuple[str, str]] = {}

    def discover_once(self) -> None:
        try:
            registered = self.shell.transport.registered()
        except Exception as e:
            logger.debug("discovery in the name server failed: {}", e)
            return
        if registered is not None:
            self.discover(registered)

    def discover(self, registered: dict[str, str]) -> None:
        shell = self.shell
        for name, uri in sorted(registered.items()):
            if name == shell.me or not self._vetted_ok(name, uri):
                continue
            with shell.lock:
                change = shell.state.set_uri(name, uri, shell.clock())
                ready = shell.take()
            shell.carry_out(ready)
            if change != "same":
                self._on_change(name)

    def look_up_again(self, name: str) -> None:
        """A silent secondary may have restarted at a new address: ask the name server now,
        so that catch-up starts within a heartbeat instead of at the next discovery."""
        try:
            registered = self.shell.transport.registered()
        except Exception as e:
            logger.trace("name server look-up of {} failed: {}", name, e)
            return
        if registered and name in registered and name != self.shell.me:
            self.discover({name: registered[name]})

    def _vetted_ok(self, name: str, uri: str) -> bool:
        """With TLS: a registration counts as secondary `name` only once the endpoint it
        names has shown name's certificate (checked once per address; a mismatch is logged
        once and the registration ignored, so it changes neither the secondaries nor the
        cluster size)."""
        shell = self.shell
        with shell.lock:
            known = self._vetted.get(name)
            sec = shell.state.secondaries.get(name)
            if known is not None and known[0] == uri:
                return known[1] == ""
            if sec is not None and sec.uri == uri:
                return True
        why = shell.transport.vet(name, uri, shell.timing.heartbeat_timeout)
        if why is None:
            return False          # not reachable yet: look again next time
        with shell.lock:
            self._vetted[name] = (uri, why)
        if why:
            logger.warning("ignored the registration of {}{} at {}: {}", SECONDARY_PREFIX, name,
                           uri, why)
        return why == ""

    def forget_departed(self, registered: dict[str, str]) -> None:
        shell = self.shell
        with shell.lock:
            gone = shell.state.departed(set(registered), shell.clock())
            for name in gone:
                self._vetted.pop(name, None)
            ready = shell.take()
        shell.carry_out(ready)
        for name in gone:
            self._on_change(name)

    def tick_loop(self) -> None:
        shell = self.shell
        timing = shell.timing
        next_discovery = 0.0
        while not shell.stopping.is_set():
            now = shell.clock()
            if now >= next_discovery:
                next_discovery = now + timing.discovery_interval
                try:
                    registered = shell.transport.registered()
                    if registered is not None:
                        self.discover(registered)
                        self.forget_departed(registered)
                except Exception as e:
                    logger.warning("discovery in the name server failed: {}", e)
            with shell.lock:
                shell.state.tick(shell.clock())
                ready = shell.take()
            shell.carry_out(ready)
            shell.stopping.wait(min(timing.heartbeat_interval, timing.discovery_interval) / 2)
