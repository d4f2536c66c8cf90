"""Chaos scenarios, one per module, each with its pass criteria in code; chaos/catalog.py
names them. A scenario takes a running Target (chaos/target.py), a seed (which fixes
every random choice, so a failing seed replays the same faults) and a size, and fills a
RunReport."""
