"""`make bench`: speed and memory figures for the bot against the docker CLI on the same engine.

Benchmarks, not tests: they print figures next to their targets and write bench/results.json.
Each run starts its own sandbox engine and registry (bot/sandbox/) and never touches another.
"""
