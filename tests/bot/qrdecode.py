"""Decoding a QR image in a test with ``zbarimg`` (Debian's zbar-tools). Without it the
QR tests skip, naming the package; with ``CI`` or ``VPNSHOP_REQUIRE_ZBAR=1`` set (as
``.ci/run`` does, after installing it) they fail instead: CI never skips them silently."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

MISSING = (
    "zbarimg is not installed: the QR tests decode the image with it "
    "(Debian: apt-get install zbar-tools)"
)


def require_zbarimg() -> str:
    """The path of zbarimg; a skip (or, in CI, a failure) naming what is missing."""
    path = shutil.which("zbarimg")
    if path is None:
        if os.environ.get("CI") or os.environ.get("VPNSHOP_REQUIRE_ZBAR") == "1":
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    return path


async def decode_qr(png: bytes, tmp_path: Path) -> str:
    """The text of the one QR code in *png*."""
    zbarimg = require_zbarimg()
    image = tmp_path / "qr.png"
    image.write_bytes(png)
    done = await asyncio.to_thread(
        subprocess.run,
        [zbarimg, "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", str(image)],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().strip()
