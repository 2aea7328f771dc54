"""What a model is for: the one seam a new task is added at.

Classification ("what") and detection ("what and where") share the whole
pipeline but for three seams: the model's outputs (here), their postprocess
(postprocess.py: top-k `Prediction`s, or `Detection`s) and what a result
carries (run/results.py: `top` and/or `detections`), which every sink renders.
A bundle's manifest names its task (`"task": "classify"`, the default for
bundles written before it was recorded). A task this edgepipe does not know is
refused when the manifest is read; one it knows but cannot run (none today: a
task added to the format before its runtime) is refused when the model is
opened, each in one line.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgepipe.core.errors import UserError


@dataclass(frozen=True)
class Task:
    name: str
    outputs: tuple[str, ...]  # the model's output tensors, by index (the order the ecosystem reads them in)
    runnable: bool  # False: known to the bundle format, not yet run by this edgepipe


CLASSIFY = Task("classify", ("scores",), runnable=True)
# SSD models ending in TFLite_Detection_PostProcess (Coral's, Frigate's): read by index.
DETECT = Task("detect", ("boxes", "classes", "scores", "count"), runnable=True)
TASKS = {task.name: task for task in (CLASSIFY, DETECT)}
DEFAULT_TASK = CLASSIFY.name


def task_named(name: object) -> Task:
    """The task a manifest names; ValueError (one line, for the caller to place) when it is not one we know."""
    task = TASKS.get(name) if isinstance(name, str) else None
    if task is None:
        raise ValueError(f"`task` is {name!r}, not one of {', '.join(TASKS)}")
    return task


def runnable_task(name: str, model: str) -> Task:
    """The task `model` is opened for; a UserError when this edgepipe cannot run that task yet."""
    task = task_named(name)
    if not task.runnable:
        raise UserError(f"{model} is a {task.name} model; this edgepipe runs {DEFAULT_TASK} models only: "
                        "upgrade edgepipe on this machine")
    return task
