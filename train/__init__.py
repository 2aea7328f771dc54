"""Transfer learning: fine-tune MobileNet on DATA/<label>/*.jpg.

TensorFlow reads its environment (tf_keras as Keras, log level) at import
time, so it is set here, before any module of this package imports it.
"""

from edgepipe.core.tfenv import configure_tensorflow

configure_tensorflow()
