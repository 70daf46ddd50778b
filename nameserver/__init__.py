"""The Pyro5 name server of the cluster (python -m nameserver)."""
