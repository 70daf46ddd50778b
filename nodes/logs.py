"""loguru set-up: one line per event, each tagged with the node's name."""
from __future__ import annotations

import logging
import sys

from loguru import logger

FORMAT = ("<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <7}</level> | "
          "<cyan>{extra[node]}</cyan> | {message}")


class _ToLoguru(logging.Handler):
    """Send the standard logging of Pyro5 and gevent through loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(exception=record.exc_info).log(level, "{}: {}", record.name, record.getMessage())


DEBUG = False   # set by setup(): lets hot paths skip building DEBUG lines


def setup(node: str, level: str = "INFO") -> None:
    global DEBUG
    DEBUG = logger.level(level.upper()).no <= logger.level("DEBUG").no
    logger.remove()
    logger.configure(extra={"node": node})
    logger.add(sys.stderr, level=level.upper(), format=FORMAT, colorize=sys.stderr.isatty(),
               backtrace=False, diagnose=False)
    logging.basicConfig(handlers=[_ToLoguru()], level=logging.WARNING, force=True)
