"""Iteration 0: the smallest Pyro5 program, an echo server and its client."""
