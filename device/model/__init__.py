"""The model room: a bundle (or a bare .tflite) read, checked and loaded on the lightest
runtime, with the one preprocessing and the postprocessing of its task.

Everything here is below the run loop: it knows nothing of cameras, sinks or the command line.
"""
