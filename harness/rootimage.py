"""Acts: the guest root packed into a read-only erofs image, built once per root and cached.

Over 9p every file Python and pytest open or stat is a round trip to QEMU; from an erofs image
on virtio-blk the guest's own page cache serves them. The image is uncompressed: under TCG
decompression would cost more guest CPU than the reads it saves.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from harness.commands import CommandRunner

IMAGE_SUFFIX = ".erofs"
STAMP_SUFFIX = ".erofs.source"
# What changes whenever the root's contents do: packages come and go through dpkg, and the
# host's precompile step writes bytecode (pytest's rewritten plugins) into dist-packages.
FINGERPRINT_PATHS = ("var/lib/dpkg/status", "usr/lib/python3/dist-packages/__pycache__",
                     "usr/lib/python3/dist-packages")
MKFS = "mkfs.erofs"
MKFS_PACKAGE = "erofs-utils"


def image_path(root: Path) -> Path:
    return root.with_name(root.name + IMAGE_SUFFIX)


def fingerprint(root: Path) -> str:
    parts = [str(root.resolve())]
    for relative in FINGERPRINT_PATHS:
        path = root / relative
        parts.append(f"{relative} {path.stat().st_mtime_ns if path.exists() else '-'}")
    return "\n".join(parts) + "\n"


def mkfs_program() -> str | None:
    return shutil.which(MKFS)


def ensure_image(root: Path, mkfs: str, runner: CommandRunner) -> Path:
    """The root's erofs image, rebuilt only when the root changed since it was made. The
    caller holds the cache lock."""
    image = image_path(root)
    stamp = root.with_name(root.name + STAMP_SUFFIX)
    if runner.dry_run:
        runner.announce(f"# pack {root} into {image}, unless {stamp} says it is current")
        return image
    source = fingerprint(root)
    if image.exists() and stamp.exists() and stamp.read_text() == source:
        return image
    partial = image.with_name(image.name + ".partial")
    partial.unlink(missing_ok=True)
    stamp.unlink(missing_ok=True)
    # Mount points stay, their contents (a chroot's leftovers) go. Python trusts a .pyc only
    # if its source's mtime is the one it recorded: the image keeps every file's mtime.
    runner.run([mkfs, "--quiet", "--all-root", "--preserve-mtime",
                "--exclude-regex=^(proc|sys|dev|tmp|run)/.+", str(partial), str(root)],
               what="packing the guest root into an erofs image")
    os.replace(partial, image)
    stamp.write_text(source)
    return image
