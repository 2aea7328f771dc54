"""Trained Keras model to an int8 TFLite bundle for the Pi CPU and the Coral
Edge TPU, with its accuracy verified through the device's preprocessing."""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
