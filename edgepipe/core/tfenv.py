"""TensorFlow's process environment, set in one place before TensorFlow is imported.

Two things must be decided before `import tensorflow`: which Keras it exposes
(tfmot needs Keras 2, i.e. tf_keras: TF_USE_LEGACY_KERAS=1) and how much its
C++ side logs. Users see none of TensorFlow's own logging (CUDA probing,
oneDNN, MLIR, SavedModel: ~25 lines per train/convert) unless they pass
--verbose or --debug. TF_CPP_MIN_LOG_LEVEL silences what TensorFlow logs
after absl logging is initialised; the lines written before that, and the
converter's printf-style output, go straight to file descriptor 2, so those
steps run with the native stderr pointed at /dev/null while Python's
sys.stderr (our progress and messages) still reaches the user. The TFLite
runtimes' C++ INFO lines (LiteRT's XNNPACK line) are dropped the same way, their
warnings and errors replayed (native_info_dropped). This module
never imports TensorFlow itself (edgepipe.train.keras_io.import_tensorflow does).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from typing import Iterator

VERBOSE_ENV = "EDGEPIPE_TF_VERBOSE"  # inherited by child processes (e.g. a demo stage)


def configure_tensorflow(verbose: bool = False) -> None:
    """Set TensorFlow's environment; call before it is imported (later calls change nothing in it).

    A TF_CPP_MIN_LOG_LEVEL the user set is kept unless `verbose` asks for everything.
    """
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def tensorflow_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


_redirecting = threading.RLock()  # file descriptor 2 is one per process: one redirection at a time


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send what C/C++ code writes to file descriptor 2 to /dev/null (nothing changes when verbose)."""
    if tensorflow_verbose():
        yield
        return
    with open(os.devnull, "wb") as devnull, _native_stderr_to(devnull.fileno()):
        yield


@contextlib.contextmanager
def native_info_dropped() -> Iterator[None]:
    """Drop the INFO lines C/C++ code writes to file descriptor 2, keep its warnings and errors.

    For the TFLite runtimes (LiteRT, tflite_runtime), whose C++ logger has no
    switch a Python caller can reach: their "INFO: Created TensorFlow Lite XNNPACK
    delegate for CPU." would otherwise reach every classify, run, bench and verify.
    What else they write is replayed on stderr afterwards. Nothing changes when verbose.
    """
    if tensorflow_verbose():
        yield
        return
    with tempfile.TemporaryFile() as captured:
        try:
            with _native_stderr_to(captured.fileno()):
                yield
        finally:
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not line.startswith("INFO: "))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


@contextlib.contextmanager
def _native_stderr_to(target: int) -> Iterator[None]:
    """Point file descriptor 2 at `target` for the duration.

    sys.stderr, when it is that descriptor, is pointed at a copy of the real
    stderr for the duration, so Python's own messages and progress bars still show.
    """
    with _redirecting:
        try:
            python_stderr_is_fd2 = sys.stderr.fileno() == 2
        except (AttributeError, OSError, ValueError):  # replaced by a capture object (pytest, IDEs)
            python_stderr_is_fd2 = False
        sys.stderr.flush()
        saved = os.dup(2)
        python_stderr = sys.stderr
        if python_stderr_is_fd2:
            sys.stderr = open(os.dup(saved), "w", buffering=1, encoding=python_stderr.encoding,
                              errors="backslashreplace")
        os.dup2(target, 2)
        try:
            yield
        finally:
            if python_stderr_is_fd2:
                sys.stderr.close()
                sys.stderr = python_stderr
            os.dup2(saved, 2)
            os.close(saved)
