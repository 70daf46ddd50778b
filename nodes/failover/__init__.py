"""Failover: every node can be master (nodes/core/election.py decides who, this package
carries it out). docs/failover.md has the rules and why they are safe.

    votes.py   the epoch and vote a node must keep across a crash (synced before answering)
    node.py    FailoverNode: the election loop, votes asked and given, and the switch of
               the node's role (a Secondary or a Master) when it wins or is deposed
    api.py     the Pyro5 objects every failover node serves, and its HTTP front (307/503)
"""
