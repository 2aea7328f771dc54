"""The device's command line: `classify`, `run` and `verify` registered, parsed and printed.

The work happens in the rooms below (model, run, sinks); these modules only turn
arguments into typed options and results into lines.
"""
