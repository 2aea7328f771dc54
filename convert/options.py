"""What `edgepipe convert` can be asked for: each option once, with its
default, flag and help (edgepipe.core.options).

Light on purpose (no TensorFlow, no numpy): the CLI imports it to build its
parser, the converter and the Edge TPU compiler take these objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgepipe.core.args import above_zero_fraction, non_negative_int, positive_float, positive_int
from edgepipe.core.options import Off, flag
from edgepipe.core.ssh import Target

SCORE_CHOICES = ("auto", "max_softmax", "temperature", "margin", "mahalanobis", "knn_cosine")  # SCORE_KINDS + auto
EDGETPU = "Edge TPU compiler (with --edgetpu)"
UNKNOWN = '"unknown" calibration (bundle.json "unknown", MODEL_CARD.md)'


@dataclass
class CompileOptions:
    min_runtime: int | None = flag("--min-runtime", default=None, parse=int, choices=(13, 14), group=EDGETPU,
                                   help="Edge TPU runtime the model must run on (compiler -m)")
    segments: int | None = flag("--segments", default=None, parse=positive_int, metavar="N", group=EDGETPU,
                                help="split the model into N segments (compiler -n)")
    host: str | None = flag("--compiler-host", default=None, metavar="USER@HOST", group=EDGETPU,
                            help="run edgetpu_compiler on this x86-64 Linux host over ssh")
    timeout: float = flag("--compiler-timeout", default=600.0, parse=positive_float, metavar="S", group=EDGETPU,
                          help="compiler timeout in seconds")

    def __post_init__(self) -> None:
        if self.host is not None:
            Target.parse(self.host)  # a bad --compiler-host fails before quantization, not after it

    @property
    def given(self) -> bool:
        """Whether anything differs from a plain local compile (those settings need --edgetpu)."""
        return any(value is not None for value in (self.min_runtime, self.segments, self.host))

    def compiler_args(self, out_dir: str) -> list[str]:
        args = ["-s", "-o", out_dir, "-t", str(max(1, int(self.timeout)))]
        if self.min_runtime is not None:
            args += ["-m", str(self.min_runtime)]
        if self.segments is not None:
            args += ["-n", str(self.segments)]
        return args


@dataclass
class ConvertOptions:
    run_dir: Path
    out: Path = flag("--out", parse=Path, metavar="BUNDLE_DIR", help="bundle folder to write")
    method: str = flag("--method", default="auto", choices=("auto", "qat", "ptq"),
                       help="auto: build PTQ and QAT, ship the more accurate; qat/ptq: ship that one "
                            "(both are still measured)")
    qat_epochs: int = flag("--qat-epochs", default=2, parse=non_negative_int, metavar="N", help="QAT fine-tune epochs")
    qat_lr: float = flag("--qat-lr", default=1e-5, parse=positive_float, metavar="LR", help="QAT learning rate")
    io: str = flag("--io", default="uint8", choices=("uint8", "int8", "float"),
                   help="input/output tensor type (uint8 is Coral-compatible, quantized on the device)")
    float16: bool = flag("--float16", default=False, help="also write model_float16.tflite for comparison")
    float32: bool = flag("--float32", default=False, help="also write model_float32.tflite for comparison")
    representative: int = flag("--representative", default=200, parse=positive_int, metavar="N",
                               help="training images used to calibrate quantization ranges")
    max_drop: float = flag("--max-drop", default=2.0, metavar="POINTS",
                           help="fail when int8 accuracy is more than this many points below float")
    batch_size: int = flag("--batch-size", default=16, parse=positive_int, help="QAT batch size")
    edgetpu: bool = flag("--edgetpu", default=False, help="also compile model_edgetpu.tflite with edgetpu_compiler")
    golden: int = flag("--golden", default=48, parse=positive_int, metavar="N",
                       help="held-out images (at least 2 per class when the split has them) copied into the bundle's "
                            "golden/ with the shipped model's answers, for `edgepipe verify` on the device",
                       off=Off("--no-golden", 0, "ship no golden set (the images must not leave this machine); "
                                                 "verify cannot run"))
    imx500: bool = flag("--imx500", default=False,
                        help="also convert for the Raspberry Pi AI Camera (Sony IMX500): imx500/packerOut.zip with its "
                             "simulated-sensor accuracy; installs Sony's pinned converter into a cached venv on first use")
    imx500_python: str | None = flag("--imx500-python", default=None, metavar="PATH",
                                     help="the Python 3.10/3.11 for the IMX500 venv (default: python3.11 or "
                                          "python3.10 on PATH)")
    compile: CompileOptions = field(default_factory=CompileOptions)
    force: bool = flag("--force", default=False, help="overwrite BUNDLE_DIR")
    unknown_accept: float = flag("--unknown-accept", default=0.99, metavar="SHARE", group=UNKNOWN,
                                 parse=above_zero_fraction("would reject every image"),
                                 help="set the threshold so this share of held-out in-class images is still accepted "
                                      "(a distance score does not need to give up more)")
    unknown_score: str = flag("--unknown-score", default="auto", choices=SCORE_CHOICES, group=UNKNOWN,
                              help="score to threshold; auto: the one that best detects a held-out class it was fitted "
                                   "without (feature-space scores need a model trained by edgepipe; without them, the "
                                   "softmax score that best separates right from wrong answers)")
    unknown_dir: Path | None = flag("--unknown-dir", default=None, parse=Path, metavar="DIR", group=UNKNOWN,
                                    help="images of none of the classes (any depth): measure the false-accept rate "
                                         "on them")
