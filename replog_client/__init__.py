"""replog_client: a Python client of replog over HTTP (no Pyro5 needed).

On a fresh cluster (``bash scripts/run.sh --fresh``: master :5000, secondaries :5001, :5002)::

    from replog_client import Client

    with Client(["http://127.0.0.1:5000", "http://127.0.0.1:5001"]) as client:
        done = client.append("hello", w=2)            # Appended(first_seq=1, seq=1, acks=2, w=2)
        client.append_many(["a", "b", "c"], w=2)      # one request, one wait: seqs 2..4
        print(client.read(from_seq=1, limit=10).messages)
        print(client.health()["quorum"])
        for entry in client.follow(from_seq=done.seq):   # Entry(seq=1, message='hello'), ...
            print(entry.seq, entry.message)              # until Ctrl-C

A write is retried (capped exponential backoff with jitter) after a lost connection or a
503, always with the same idempotency key, so it is appended once however often it is
sent. The client finds the master by itself: a secondary's 307 is followed, a connection
error moves on to the next URL, and the URL that answered is remembered. Failures arrive as
the exceptions below, with the server's own message.
"""
from .client import Client
from .errors import BadRequest, ReadOnly, ReplogError, Unavailable, WriteConcernTimeout
from .model import Appended, Entry, Page

__all__ = ["Client", "Appended", "Entry", "Page", "ReplogError", "BadRequest", "ReadOnly",
           "Unavailable", "WriteConcernTimeout"]
