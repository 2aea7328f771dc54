"""Loading tf_keras models: one place that knows the legacy-Keras switch and
turns a bad file into a one-line error."""

from __future__ import annotations

from pathlib import Path

from edgepipe.core.errors import UserError
from edgepipe.core.tfenv import import_tensorflow


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
