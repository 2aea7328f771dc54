"""What the sinks of `edgepipe run` are asked for (MQTT, the web page, frame collection): each
option once, with its default, flag and help (edgepipe.core.options).

Light on purpose (no numpy, OpenCV, paho or prometheus_client): the command line imports it to
build its parser; each sink takes its object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgepipe.core.args import non_negative_int, positive_float, unit_interval
from edgepipe.core.options import flag

from .endpoints import MqttTarget

MQTT = "MQTT and Home Assistant"
SERVE = "web page, API and Prometheus metrics"
COLLECT = "collecting frames to train on (off unless --collect; see docs/privacy.md)"
MIN_FREE_MB = 64.0  # collect never writes when the file system has less free than this


@dataclass(frozen=True)
class MqttOptions:
    target: MqttTarget  # --mqtt URL
    ca_file: Path | None = flag("--mqtt-ca", default=None, parse=Path, metavar="FILE", group=MQTT,
                                help="CA certificate for mqtts:// (default: the system's)")
    interval: float = flag("--mqtt-interval", default=60.0, parse=positive_float, metavar="S", group=MQTT,
                           help="republish the state at least every S seconds")
    rate: float = flag("--mqtt-rate", default=1.0, parse=positive_float, metavar="N", group=MQTT,
                       help="at most N result messages per second")
    discovery: bool = flag("--no-ha-discovery", default=True, group=MQTT,
                           help="do not publish Home Assistant discovery configs")


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"  # --serve [HOST:]PORT
    port: int = 8080  # 0: any free port (see HttpSink.port)
    fps: float = flag("--serve-fps", default=5.0, parse=positive_float, metavar="FPS", group=SERVE,
                      help="at most FPS JPEG frames per second to watchers; none while nobody watches")
    token: str | None = field(default=None, repr=False)  # --serve-token, $EDGEPIPE_SERVE_TOKEN or --serve-token-file
    preview: bool = flag("--no-preview", default=True, group=SERVE, help="serve results and metrics but never images")
    stale_after: float = 5.0  # /healthz turns 503 when the last result is older (s)
    public: bool = flag("--serve-public", default=False, group=SERVE,
                        help="allow --serve on a non-loopback address without a token: anyone who can reach this "
                             "machine sees the live video, results and metrics")
    request_timeout: float = 10.0  # seconds a socket read or write may wait (idle, half-sent, non-reading clients)


@dataclass(frozen=True)
class CollectOptions:
    root: Path  # --collect DIR
    below: float | None = flag("--collect-below", default=None, parse=unit_interval, metavar="P", group=COLLECT,
                               help="also keep frames whose top-1 score is below P")
    margin: float | None = flag("--collect-margin", default=None, parse=unit_interval, metavar="M", group=COLLECT,
                                help="also keep frames whose top-1 and top-2 scores are within M")
    every: int = flag("--collect-every", default=100, parse=non_negative_int, metavar="N", group=COLLECT,
                      help="keep one in N confident frames too, so the data is not only hard cases (0: none)")
    rate: float = flag("--collect-rate", default=6.0, parse=positive_float, metavar="PER_MIN", group=COLLECT,
                       help="keep at most this many frames a minute")
    max_mb: float = flag("--collect-max-mb", default=500.0, parse=positive_float, metavar="MB", group=COLLECT,
                         help="disk budget of DIR: the oldest frames are deleted beyond it; nothing is written "
                              f"while the disk has less than {MIN_FREE_MB:g} MB free")
    min_free_mb: float = MIN_FREE_MB
    queue_frames: int = 8  # frames waiting for the writer at most; more are dropped and counted
