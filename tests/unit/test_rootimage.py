"""The guest root's erofs image, packed by the real mkfs.erofs from a small tree."""

import io
import os
import shutil
import subprocess

import pytest

from harness import rootimage
from harness.commands import CommandRunner

pytestmark = pytest.mark.skipif(shutil.which("mkfs.erofs") is None,
                                reason="mkfs.erofs is missing: run ci/bootstrap (erofs-utils)")


@pytest.fixture
def root(tmp_path):
    tree = tmp_path / "root"
    for directory in ("proc/1", "tmp", "hmm/project", "var/lib/dpkg",
                      "usr/lib/python3/dist-packages"):
        (tree / directory).mkdir(parents=True)
    (tree / "tmp/leftover").write_text("from a chroot")
    (tree / "var/lib/dpkg/status").write_text("Package: python3\n")
    module = tree / "usr/lib/python3/dist-packages/m.py"
    module.write_text("x = 1\n")
    os.utime(module, ns=(1_000_000_000_123, 1_000_000_000_123))
    return tree


def _dump(image, *options):
    return subprocess.run(["dump.erofs", *options, str(image)], capture_output=True,
                          text=True, check=True, env={**os.environ, "TZ": "UTC"}).stdout


def test_the_image_is_built_once_and_kept_while_the_root_is_unchanged(root):
    runner = CommandRunner(log=io.StringIO())
    image = rootimage.ensure_image(root, shutil.which("mkfs.erofs"), runner)
    assert image == root.with_name("root.erofs") and image.stat().st_size > 0
    built = image.stat().st_mtime_ns
    assert rootimage.ensure_image(root, shutil.which("mkfs.erofs"), runner).stat(
    ).st_mtime_ns == built
    assert sum("mkfs.erofs" in line for line in runner.history) == 1


def test_a_changed_package_list_rebuilds_the_image(root):
    runner = CommandRunner(log=io.StringIO())
    rootimage.ensure_image(root, shutil.which("mkfs.erofs"), runner)
    status = root / "var/lib/dpkg/status"
    status.write_text("Package: python3\n\nPackage: python3-hypothesis\n")
    os.utime(status, ns=(2_000_000_000_000, 2_000_000_000_000))
    rootimage.ensure_image(root, shutil.which("mkfs.erofs"), runner)
    assert sum("mkfs.erofs" in line for line in runner.history) == 2


def test_mount_points_stay_but_chroot_leftovers_go(root):
    image = rootimage.ensure_image(root, shutil.which("mkfs.erofs"),
                                   CommandRunner(log=io.StringIO()))
    assert " tmp\n" in _dump(image, "--ls", "--path=/")
    assert "leftover" not in _dump(image, "--ls", "--path=/tmp")
    assert not [line for line in _dump(image, "--ls", "--path=/proc").splitlines()
                if line.split()[-1:] == ["1"]]


def test_file_times_survive_so_python_trusts_its_bytecode(root):
    image = rootimage.ensure_image(root, shutil.which("mkfs.erofs"),
                                   CommandRunner(log=io.StringIO()))
    shown = _dump(image, "--path=/usr/lib/python3/dist-packages/m.py")
    assert "Timestamp: 1970-01-01 00:16:40.000000123" in shown
