"""`edgepipe inspect`'s analysis of a .tflite, without TensorFlow: what the file holds and what
Edge TPU compiler 16 will do with it. Used by convert (before compiling) and by users on any
machine, so it lives on the device side of the import line."""
