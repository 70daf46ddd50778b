"""replog: a teaching-grade replicated log (one master, many secondaries)."""
