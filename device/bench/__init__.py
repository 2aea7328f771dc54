"""`edgepipe bench`: latency measured with the device runtime (a device job,
so it lives under device/ and imports nothing TensorFlow)."""
