"""Where a model can run, named once for every command that asks.

`auto` picks the Edge TPU model when a TPU is usable and the CPU model
otherwise; `all` (bench and verify) covers the CPU and the Edge TPU when present. `imx500` is the
Raspberry Pi AI Camera, whose sensor runs the network: only run, bench and verify reach it (through
the camera), never a file; run's `auto` picks it first when the bundle has an IMX500 model and an
AI Camera is attached.
"""

ACCELERATORS = ("cpu", "edgetpu", "imx500", "auto")
BENCH_ACCELERATORS = ("cpu", "edgetpu", "imx500", "all")
VERIFY_ACCELERATORS = BENCH_ACCELERATORS
