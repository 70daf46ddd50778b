"""The master's shell around its state machine (nodes/core/master.py); see node.py."""
from .node import Master
from .shell import Timing
from .transport import PyroTransport, Transport

__all__ = ["Master", "PyroTransport", "Timing", "Transport"]
