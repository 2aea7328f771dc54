"""network.rpk: the file Picamera2 uploads to the IMX500, made on the Pi from the bundle's packerOut.zip.

Only Raspberry Pi's `imx500-package` (apt: imx500-tools, Raspberry Pi OS only)
makes it, so convert cannot: the bundle carries packerOut.zip and the device
packages it once per package hash, into $XDG_CACHE_HOME/edgepipe/imx500-rpk/
(shared by every release of the same model), and keeps a copy in the bundle
folder as imx500/network.rpk with a record (network.rpk.json) tying it to the
package's sha256 in bundle.json. The record and the copy are checked before
each use: a bundle whose package changed, or an rpk edited on disk, is
packaged again instead of loaded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgepipe.core.errors import UserError
from edgepipe.core.files import atomic_write_bytes, atomic_write_text
from edgepipe.core.cachedir import cache_dir
from .bundle import Bundle
from .imx500_contract import RPK, Imx500Block, imx500_block

PACKAGER = "imx500-package"
RECORD = "network.rpk.json"
PACKAGE_TIMEOUT_S = 600.0
PACKAGER_HINT = ("imx500-package comes with Raspberry Pi OS's imx500-tools: `sudo apt install imx500-all imx500-tools` "
                 "(edgepipe deploy setup installs them for a bundle with an IMX500 model)")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rpk_cache() -> Path:
    return cache_dir("imx500-rpk")


def bundle_block(bundle: Bundle) -> Imx500Block:
    block = imx500_block(bundle.manifest, str(bundle.root / "bundle.json"))
    if block is None:
        raise UserError(f"bundle {bundle.root} has no IMX500 model: convert it with `edgepipe convert RUN --out "
                        "BUNDLE --imx500` for the Raspberry Pi AI Camera")
    return block


def recorded_rpk(bundle: Bundle) -> Path | None:
    """The bundle's network.rpk when its record matches this package and the rpk's bytes, else None."""
    block = bundle_block(bundle)
    folder = (bundle.root / block.package).parent
    rpk, record = folder / RPK, folder / RECORD
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("package_sha256") != block.package_sha256 or not rpk.is_file():
        return None
    return rpk if _sha256(rpk) == data.get("rpk_sha256") else None


def _package(package: Path, out: Path) -> None:
    """imx500-package -i packerOut.zip -o DIR, the rpk moved to `out`."""
    tool = shutil.which(PACKAGER)
    if tool is None:
        raise UserError(f"no {PACKAGER} on this machine to turn packerOut.zip into network.rpk: {PACKAGER_HINT}")
    with tempfile.TemporaryDirectory(prefix="edgepipe-rpk-") as tmp:
        try:
            proc = subprocess.run([tool, "-i", str(package), "-o", tmp], capture_output=True, text=True,
                                  timeout=PACKAGE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise UserError(f"{PACKAGER} took over {PACKAGE_TIMEOUT_S:.0f} s on {package}") from None
        made = sorted(Path(tmp).rglob("*.rpk"))
        if proc.returncode != 0 or len(made) != 1:
            last = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()[-1]
            raise UserError(f"{PACKAGER} failed on {package}: {last}")
        atomic_write_bytes(out, made[0].read_bytes())


def ensure_rpk(bundle: Bundle, say=lambda message: None) -> Path:
    """The bundle's network.rpk, packaged now when this package hash has none yet (once per hash)."""
    existing = recorded_rpk(bundle)
    if existing is not None:
        return existing
    block = bundle_block(bundle)
    cached = rpk_cache() / f"{block.package_sha256}.rpk"
    if not cached.is_file():
        say(f"packaging {block.package} into network.rpk with {PACKAGER} (once per model)")
        cached.parent.mkdir(parents=True, exist_ok=True)
        package = bundle.read_member(block.package, max_bytes=64 << 20, what="IMX500 package")
        with tempfile.NamedTemporaryFile(suffix=".zip") as verified:  # the bytes whose hash was just checked
            verified.write(package)
            verified.flush()
            _package(Path(verified.name), cached)
    folder = (bundle.root / block.package).parent
    rpk = folder / RPK
    data = cached.read_bytes()
    atomic_write_bytes(rpk, data)
    atomic_write_text(folder / RECORD, json.dumps({"package_sha256": block.package_sha256,
                                                   "rpk_sha256": hashlib.sha256(data).hexdigest(),
                                                   "made_by": PACKAGER}, indent=2))
    return rpk


def main(argv: list[str]) -> int:
    """`python -m edgepipe.device.model.imx500_package BUNDLE`: what deploy runs on the device for a release."""
    import sys

    from .bundle import load_bundle

    if len(argv) != 1:
        print("usage: python -m edgepipe.device.model.imx500_package BUNDLE", file=sys.stderr)
        return 2
    try:
        rpk = ensure_rpk(load_bundle(argv[0], verify=True), lambda m: print(m, file=sys.stderr, flush=True))
    except UserError as exc:
        print(f"edgepipe imx500-package: error: {exc}", file=sys.stderr)
        return 1
    print(rpk)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
