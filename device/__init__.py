"""The on-device runtime: camera or files in, labels out.

This package is what a Raspberry Pi installs (`pip install edgepipe[device]`),
so it imports nothing of edgepipe but the core, and never TensorFlow, Keras or
tfmot. The other stages import from it (preprocessing, the bundle contract).

Its rooms follow a frame, each using only the rooms listed before it:
    host.py   the machine: cores, Edge TPU runtime, the Pi's temperature and throttling
    model/    a bundle or .tflite read and checked, the interpreter, pre/postprocess per task
    inspect/  what a .tflite holds and what the Edge TPU compiler will do with it
    run/      sources, capture, workers, the loop, FrameResult and the Sink interface
    sinks/    where results go: lines, display, recorder, stats JSON, MQTT, HTTP, collect
    bench/    latency measured with the same model and loop
    cli/      `classify`, `run` and `verify` on the command line
"""
