"""edgepipe: labelled photos to a real-time classifier on a Raspberry Pi or a
Coral Edge TPU, and latency numbers you can trust."""

__version__ = "0.3.0.dev0"
