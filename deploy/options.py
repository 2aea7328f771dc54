"""What `edgepipe deploy` can be asked for: each option once, with its
default, flag and help (edgepipe.core.options).

Light on purpose (standard library and edgepipe.core only): the CLI imports
it to build its parser; release, setup and collect take these objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgepipe.core.accelerators import ACCELERATORS
from edgepipe.core.args import positive_float, positive_int
from edgepipe.core.errors import UserError
from edgepipe.core.options import flag
from edgepipe.core.safetext import has_control, redact
from edgepipe.device.model.options import ModelOptions

SERVICE = "service"
SETUP = "setup (deploy setup HOST)"
COLLECT = "deploy collect"


@dataclass(frozen=True)
class ReleaseOptions:
    """How a release is shipped: verified first or not, with a service or not, how many kept."""

    service: bool = flag("--service", default=True, group=SERVICE,
                         help="install/restart the service and health-check it (--no-service only uploads, "
                              "verifies and switches `current`)")
    keep: int = flag("--keep", default=3, parse=positive_int, group=SERVICE, help="releases to keep on the device")
    verify: bool = flag("--verify", default=True, group=SERVICE,
                        help="run the bundle's golden set on the device (`edgepipe verify`) before switching "
                             "`current`; a release whose answers differ is discarded (--no-verify skips it, with a "
                             "warning)")


@dataclass(frozen=True)
class ServiceSettings:
    """The service that runs `edgepipe run` on the device. mqtt, serve, roi and secrets come from flags
    the CLI checks and rewrites first (a password never goes into the unit)."""

    source: str | None = flag("--source", default=None, group=SERVICE,
                              help="`edgepipe run --source` for the service (default: run's own: picamera2 when "
                                   "present, else /dev/video0)")
    accelerator: str = flag("--accelerator", default=ModelOptions.accelerator, choices=ACCELERATORS, group=SERVICE,
                            help="`edgepipe run --accelerator` for the service")
    manager: str = flag("--service-manager", default="systemd", choices=("systemd", "process"), group=SERVICE,
                        help="systemd, or `process`: a detached process with a pid file for devices without "
                             "systemd (containers) and for tests")
    scope: str = flag("--unit-scope", default="user", choices=("user", "system"), group=SERVICE,
                      help="systemd user unit (~/.config/systemd/user) or system unit (/etc/systemd/system, needs "
                           "root or passwordless sudo)")
    health_timeout: float = flag("--health-timeout", default=60.0, parse=positive_float, metavar="S", group=SERVICE,
                                 help="seconds the service has to print its first result")
    mqtt: str | None = None  # run --mqtt, without its password
    serve: str | None = None  # run --serve HOST:PORT
    serve_public: bool = False  # run --serve-public (checked by the CLI: only with --serve)
    roi: tuple[str, ...] = ()  # run --roi NAME=x,y,w,h
    secrets: dict[str, str] = field(default_factory=dict, repr=False)  # env name -> value, for the 0600 env file
    collect: bool = flag("--collect", default=False, group=SERVICE,
                         help="the service keeps unsure frames in PREFIX/collect (`run --collect`, its default "
                              "limits)")

    def __post_init__(self) -> None:
        if self.source and has_control(self.source):  # a newline would start a new directive in the unit
            raise UserError(f"--source {redact(self.source)!r} contains a control character; refusing to put it "
                            "in the service's systemd unit")


@dataclass(frozen=True)
class SetupOptions:
    wheel: Path | None = flag("--wheel", default=None, metavar="FILE", group=SETUP,
                              help="install this edgepipe wheel (default: build one from the checkout this "
                                   "edgepipe runs from)")
    coral: bool = flag("--coral", default=False, group=SETUP,
                       help="also the Edge TPU runtime (Coral's apt repository, libedgetpu1-std, udev rule)")
    imx500: bool = flag("--imx500", default=False, group=SETUP,
                        help="also the Raspberry Pi AI Camera's packages (imx500-all, imx500-tools: Raspberry Pi OS "
                             "only), for bundles converted with --imx500: deploy then makes network.rpk on the device")
    apt: bool = flag("--apt", default=True, group=SETUP,
                     help="install apt packages (--no-apt when python3-venv is there and sudo is not)")
    dry_run: bool = flag("--dry-run", default=False, group=SETUP,
                         help="print every step; change nothing on either side")


@dataclass(frozen=True)
class CollectRequest:
    to: Path  # --to, which the CLI requires for `deploy collect` only
    move: bool = flag("--move", default=False, group=COLLECT,
                      help="delete on the device the frames that arrived intact (default: copy only)")
    device_dir: str | None = flag("--from", default=None, metavar="DEVICE_DIR", group=COLLECT,
                                  help="the device's collect folder (default PREFIX/collect)")
