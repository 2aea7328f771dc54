"""The inference workers of `run --workers N`: one interpreter each, so consecutive frames
are inferred at the same time (LiteRT releases the GIL inside invoke())."""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from ..model.classifier import Classifier
from .frames import POLL_S, FrameBuffer
from .ordering import Inferred, ResultOrder
from .regions import Region, region_boxes
from .timing import invoke_loaded_timed, load_timed


class InferenceWorker(threading.Thread):
    """One interpreter: takes the next frame, preprocesses it straight into the interpreter's
    input tensor and invokes (also on each --roi region's crop: an interpreter is used by its
    own worker only). Preprocessing here rather than in the capture thread costs no more CPU,
    needs no tensor per frame and no copy into the interpreter, and leaves capture to decode."""

    def __init__(self, number: int, classifier: Classifier, buffer: FrameBuffer, order: ResultOrder,
                 stop: threading.Event, regions: Sequence[Region] = ()) -> None:
        super().__init__(name=f"edgepipe-infer-{number}", daemon=True)
        self.classifier, self.buffer, self.order, self.stop = classifier, buffer, order, stop
        self.regions = regions

    def run(self) -> None:
        failure: BaseException | None = None
        try:
            self._work()
        except BaseException as exc:  # handed to the emitting thread, which raises it
            failure = exc
            self.stop.set()
        finally:
            self.order.worker_done(failure)

    def _work(self) -> None:
        while not self.stop.is_set():
            if not self.order.reserve(POLL_S):
                continue
            frame = self.buffer.get(POLL_S)
            if frame is None:
                self.order.give_back()
                if self.buffer.ended:
                    return
                continue
            preprocess_ms = load_timed(self.classifier, frame.image)
            scores, inference_ms = invoke_loaded_timed(self.classifier)
            features = self.classifier.features()  # before the regions invoke this interpreter again
            self.order.put(Inferred(frame, scores, preprocess_ms, inference_ms, self._infer_regions(frame.image),
                                    features))

    def _infer_regions(self, image: np.ndarray) -> dict[str, tuple[tuple[int, int, int, int], np.ndarray]]:
        """Each --roi cropped from the frame and inferred by this worker's interpreter, like a frame of its own."""
        inferred = {}
        for name, box in region_boxes(self.regions, image.shape[1], image.shape[0]).items():
            x0, y0, x1, y1 = box
            self.classifier.load_frame(image[y0:y1, x0:x1])
            inferred[name] = (box, self.classifier.invoke_loaded())
        return inferred
