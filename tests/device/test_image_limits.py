"""Images are bounded before decoding: the pixel count in the header is
checked against --max-image-pixels, and an oversized or undecodable image is
skipped with its name, never ending a batch (issue 11, class 5)."""

from __future__ import annotations

import json
import shutil
import struct
import zlib

import cv2
import numpy as np
import pytest

from edgepipe.cli import main
from edgepipe.device.model.imageheader import image_dimensions


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header declares width x height (the decompression-bomb shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("ext, params", [(".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
                                         (".bmp", []), (".webp", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])])
def test_header_dimensions_match_what_opencv_decodes(ext, params):
    image = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(ext, image, params)
    assert ok
    assert image_dimensions(encoded.tobytes()) == (53, 37)


def test_a_tiny_png_declaring_60000x60000_is_skipped_and_the_batch_goes_on(tiny_bundle, image_folder, tmp_path,
                                                                          capsys):
    folder = tmp_path / "images"
    shutil.copytree(image_folder["root"], folder)
    bomb = folder / "01_bomb.png"
    bomb.write_bytes(_png_declaring(60000, 60000))
    assert bomb.stat().st_size < 300
    stats = tmp_path / "stats.json"
    code = main(["run", str(tiny_bundle), "--source", str(folder), "--json", "--stats-json", str(stats)])
    out, err = capsys.readouterr()
    assert code == 1  # images were skipped
    assert len(out.splitlines()) == len(image_folder["good"])  # every good image after the bomb was classified
    assert f"skipped: image {bomb} declares 60000x60000 pixels (3600 MP)" in err
    assert "internal error" not in err
    assert json.loads(stats.read_text())["errors"] == 3


def test_the_pixel_limit_is_configurable(tiny_bundle, image_folder, capsys):
    good = image_folder["good"][0]
    width, height = image_dimensions(good.read_bytes())
    assert main(["classify", str(tiny_bundle), str(good), "--max-image-pixels", str(width * height - 1)]) == 1
    assert f"more than the {(width * height - 1) / 1e6:g} MP limit" in capsys.readouterr().err
    assert main(["classify", str(tiny_bundle), str(good), "--max-image-pixels", str(width * height)]) == 0
