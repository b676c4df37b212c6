"""Vendor the dashboard's chart library from the npm registry (a build step,
run by ``python3 scripts/dev.py vendor``; nothing is fetched at run time).

The files, their version and their SHA-256 are recorded in
``scripts/dashboard/static/vendor/VENDORED.json``; a test checks them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

PACKAGE, VERSION = "uplot", "1.6.32"
FILES = {"package/dist/uPlot.iife.min.js": "uPlot.iife.min.js", "package/dist/uPlot.min.css": "uPlot.min.css",
         "package/LICENSE": "uPlot.LICENSE"}
VENDOR = Path(__file__).resolve().parent / "dashboard" / "static" / "vendor"


def vendor() -> dict[str, str]:
    """Fetch ``PACKAGE@VERSION`` with npm, copy its files here; returns their SHA-256 by name.

    Raises:
        RuntimeError: npm is missing or failed.
    """
    if shutil.which("npm") is None:
        raise RuntimeError("npm is needed to vendor the chart library (Debian: apt-get install npm)")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}"], cwd=tmp, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"npm pack {PACKAGE}@{VERSION} failed: {done.stderr.strip()}")
        tarball = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(tarball) as archive:
            for member, name in FILES.items():
                source = archive.extractfile(member)
                if source is None:
                    raise RuntimeError(f"{member} is not in {tarball.name}")
                (VENDOR / name).write_bytes(source.read())
    hashes = {name: hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() for name in FILES.values()}
    (VENDOR / "VENDORED.json").write_text(json.dumps({"package": PACKAGE, "version": VERSION, "sha256": hashes}, indent=2) + "\n")
    return hashes
