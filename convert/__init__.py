"""Trained Keras model to an int8 TFLite bundle for the Pi CPU and the Coral
Edge TPU, with its accuracy verified through the device's preprocessing."""

from edgepipe.core.tfenv import configure_tensorflow

configure_tensorflow()
