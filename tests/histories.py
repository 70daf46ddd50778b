"""Checks shared by the process-level and the Docker durability tests."""


def check_history(log: list[str], acked: dict) -> None:
    """Every acknowledged write is in the log exactly once, each client's in its order."""
    assert len(log) == len(set(log)), "a message is in the log twice"
    where = {m: i for i, m in enumerate(log)}
    for client, msgs in acked.items():
        missing = [m for m in msgs if m not in where]
        assert not missing, f"client {client}: acknowledged but lost: {missing[:5]}"
        positions = [where[m] for m in msgs]
        assert positions == sorted(positions), f"client {client}: order not kept"
