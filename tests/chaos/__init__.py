"""Chaos tests: the real processes under injected faults and kills (see test_chaos.py)."""
