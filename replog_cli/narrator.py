"""The demo's step runner: every step says what we do, what should happen and what
happened, and remembers whether the expectation held. Pure (output and sleep injected),
unit-tested; the scenarios in demo.py are built on it."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from rich.markup import escape


class Failed(Exception):
    """An expectation did not hold; the message says what happened instead."""


class Skipped(Exception):
    """A scenario that cannot run here (e.g. it needs process control)."""


class ScenarioAborted(Exception):
    """Raised by a failed step: the rest of its scenario depends on it."""


def check(condition: Any, happened: str) -> None:
    """Fail the current step with `happened` unless `condition` holds."""
    if not condition:
        raise Failed(happened)


@dataclass(frozen=True)
class Result:
    scenario: str
    number: int
    title: str
    ok: bool
    happened: str


class Narrator:
    def __init__(self, say: Callable[[str], None], pace: float = 0.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.say = say
        self.pace = pace
        self.sleep = sleep
        self.results: list[Result] = []
        self.skipped: list[tuple[str, str]] = []
        self.scenario_name = ""
        self._number = 0

    def scenario(self, name: str, intro: str) -> None:
        self.scenario_name = name
        self._number = 0
        self.say(f"\n[bold]== {escape(name)} ==[/bold]  {escape(intro)}")

    def note(self, text: str) -> None:
        self.say(f"[dim]   {escape(text)}[/dim]")

    def step(self, do: str, should: str, action: Callable[[], str]) -> str:
        """Run one step; raises ScenarioAborted when its expectation fails."""
        self._number += 1
        self.say(f"\n[bold cyan][{self._number}][/bold cyan] [bold]What we do:[/bold]     {escape(do)}")
        self.say(f"    [bold]Should happen:[/bold]  {escape(should)}")
        started = time.monotonic()
        try:
            happened, ok = action(), True
        except Skipped:
            raise
        except Failed as e:
            happened, ok = str(e), False
        except Exception as e:   # an error is a failed expectation too, said as it is
            happened, ok = f"{type(e).__name__}: {e}", False
        took = time.monotonic() - started
        mark = "[green]✓[/green]" if ok else "[bold red]✗ FAILED[/bold red]"
        self.say(f"    [bold]What happened:[/bold]  {escape(happened)}  {mark} [dim]({took:.2f} s)[/dim]")
        self.results.append(Result(self.scenario_name, self._number, do, ok, happened))
        if self.pace > 0:
            self.sleep(self.pace)
        if not ok:
            raise ScenarioAborted(do)
        return happened

    def run(self, name: str, body: Callable[[], None]) -> None:
        """Run one scenario's body; a failed step or a skip ends only that scenario."""
        try:
            body()
        except ScenarioAborted as e:
            self.say(f"[red]   {escape(name)}: stopped after the failed step ({escape(str(e))}).[/red]")
        except Skipped as e:
            self.skipped.append((name, str(e)))
            self.say(f"[yellow]   {escape(name)} skipped: {escape(str(e))}[/yellow]")
        except Exception as e:   # set-up or tear-down failed outside any step
            self.results.append(Result(name, 0, "set-up / tear-down", False,
                                       f"{type(e).__name__}: {e}"))
            self.say(f"[bold red]   {escape(name)} could not run: {type(e).__name__}: {escape(str(e))}[/bold red]")

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if not r.ok]

    def exit_code(self) -> int:
        """0 when every step ran and held; 1 when any failed (a skip is not a pass either
        when nothing ran at all)."""
        if self.failures:
            return 1
        return 0 if self.results else 1

    def summary(self) -> str:
        passed = sum(1 for r in self.results if r.ok)
        text = f"{passed} of {len(self.results)} steps as expected"
        if self.skipped:
            text += f"; skipped: {', '.join(name for name, _ in self.skipped)}"
        for r in self.failures:
            text += f"\n  FAILED {r.scenario} [{r.number}] {r.title}: {r.happened}"
        return text
