"""Transfer learning: fine-tune MobileNet on DATA/<label>/*.jpg.

tfmot (used by convert) needs Keras 2, i.e. tf_keras; TensorFlow picks the
Keras it exposes from this variable at import time, so it is set here, before
any module of this package imports TensorFlow.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
