"""Importing TensorFlow quietly and loading tf_keras models: one place that
knows the legacy-Keras switch and turns a bad file into a one-line error."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

from edgepipe.core.errors import UserError
from edgepipe.core.tfenv import configure_tensorflow, native_stderr_silenced, tensorflow_verbose

TF_PYTHON_PACKAGES = r"(tensorflow|tf_keras|tensorflow_model_optimization|absl)(\.|$)"


def import_tensorflow():
    """tensorflow, imported quietly (unless verbose) with tf_keras as its Keras; returns the module."""
    configure_tensorflow(tensorflow_verbose())
    if "tensorflow" not in sys.modules:
        with native_stderr_silenced():
            import tensorflow  # noqa: F401
            import tf_keras  # noqa: F401
        if not tensorflow_verbose():
            for name in ("tensorflow", "absl", "h5py"):
                logging.getLogger(name).setLevel(logging.ERROR)
            warnings.filterwarnings("ignore", module=TF_PYTHON_PACKAGES)
    import tensorflow

    return tensorflow


def keras():
    """tf_keras (Keras 2), the Keras tfmot can quantize, with TensorFlow imported quietly (edgepipe.core.tfenv)."""
    import_tensorflow()
    import tf_keras

    return tf_keras


def load_keras_model(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model {path} does not exist")
    try:
        return keras().models.load_model(path, compile=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load Keras model {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
