"""The on-device runtime: camera or files in, labels out.

This package is what a Raspberry Pi installs (`pip install edgepipe[device]`),
so it imports nothing else of edgepipe and never TensorFlow, Keras or tfmot.
The other stages import from it (preprocessing, the bundle contract, errors).
"""
