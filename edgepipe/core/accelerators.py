"""Where a model can run, named once for every command that asks.

`auto` picks the Edge TPU model when a TPU is usable and the CPU model
otherwise; `all` (bench and verify) covers every accelerator that is present.
"""

ACCELERATORS = ("cpu", "edgetpu", "auto")
BENCH_ACCELERATORS = ("cpu", "edgetpu", "all")
VERIFY_ACCELERATORS = BENCH_ACCELERATORS
