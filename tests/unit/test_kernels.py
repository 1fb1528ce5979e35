"""Where a bare bzImage's config comes from, and what is refused before anything is built."""

import gzip
from pathlib import Path

import pytest

from harness import debian, kernels, kernelspec
from harness.errors import KernelConfigError, UsageError
from tests.unit.test_ikconfig import CONFIG, bzimage, vmlinux


def request(spec, **kwargs):
    return kernels.KernelRequest(spec, Path("/cache"), debian.DEFAULT_MIRROR, **kwargs)


def test_config_from_the_modules_directory_first(tmp_path):
    modules = tmp_path / "lib/modules/7.2.0"
    (modules / "build").mkdir(parents=True)
    (modules / "build/.config").write_text("CONFIG_A=y\n")
    image = tmp_path / "bzImage"
    image.write_bytes(bzimage(gzip.compress(vmlinux())))
    spec = kernelspec.KernelImage(image, modules)
    assert kernels.image_config(spec, tmp_path / "cache") == (
        modules / "build/.config", str(modules / "build/.config"))
    (modules / "config").write_text("CONFIG_B=y\n")
    assert kernels.image_config(spec, tmp_path / "cache")[0] == modules / "config"


def test_config_from_the_image_itself(tmp_path):
    image = tmp_path / "bzImage"
    image.write_bytes(bzimage(gzip.compress(vmlinux())))
    path, origin = kernels.image_config(kernelspec.KernelImage(image, None), tmp_path / "cache")
    assert path.read_text() == CONFIG and path.is_relative_to(tmp_path / "cache/images")
    assert origin == "its own IKCONFIG"


def test_no_config_anywhere_says_so(tmp_path):
    image = tmp_path / "bzImage"
    image.write_bytes(bzimage(gzip.compress(vmlinux(with_config=False))))
    with pytest.raises(KernelConfigError) as error:
        kernels.image_config(kernelspec.KernelImage(image, tmp_path), tmp_path / "cache")
    assert f"no config for {image}" in error.value.problem
    assert "without CONFIG_IKCONFIG" in error.value.problem
    assert "CONFIG_IKCONFIG=y" in error.value.fix


def test_debug_needs_a_source_tree():
    kernels.check(request(kernelspec.SourceTree(Path("/src/linux")), debug=True))
    for spec in (kernelspec.DebianKernel(debian.DEFAULT_KERNEL),
                 kernelspec.BuiltTree(Path("/b"), Path("/src")),
                 kernelspec.KernelImage(Path("/bzImage"), None)):
        with pytest.raises(UsageError, match="--debug configures a kernel tree"):
            kernels.check(request(spec, debug=True, module=Path("/m.ko")))


def test_bare_image_needs_a_module_or_modules_dir(tmp_path):
    with pytest.raises(UsageError, match="bzImage alone"):
        kernels.check(request(kernelspec.KernelImage(Path("/bzImage"), None)))
    kernels.check(request(kernelspec.KernelImage(Path("/bzImage"), None), module=Path("/t.ko")))
    with pytest.raises(UsageError, match="is not a directory"):
        kernels.check(request(kernelspec.KernelImage(Path("/bzImage"), tmp_path / "none")))
