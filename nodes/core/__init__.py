"""The pure core: every decision of the replicated log, with no sockets, threads or clocks.

Time is passed in as plain floats (seconds), randomness as a callable returning [0, 1).
The shells in nodes/ (Pyro5, Bottle, threads) drive these objects under one lock.
"""
