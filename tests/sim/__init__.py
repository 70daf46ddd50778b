"""A deterministic simulation of a whole cluster's election and fencing (docs/failover.md).

    python -m tests.sim --seed 7          # one seed, replayed exactly
    python -m tests.sim --seeds 5000      # a long run
"""
