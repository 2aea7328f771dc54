"""The model room: a bundle (or a bare .tflite) read, checked and loaded on the lightest
runtime, with the one preprocessing and the postprocessing of its task.

Everything here is below the run loop: it knows nothing of cameras or sinks, and of the command
line only the flags its options are declared with (options.py, edgepipe.core.options).
"""
