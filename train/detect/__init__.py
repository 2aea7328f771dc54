"""Object detection: boxed-image data sets in the common formats, and COCO-style evaluation."""
