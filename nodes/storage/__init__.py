"""Storage beside the core, as etcd keeps its WAL beside raft: the record format is pure
functions on bytes (format.py); wal.py appends, syncs in groups and replays at startup."""
