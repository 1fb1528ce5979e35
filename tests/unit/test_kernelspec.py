"""What `--kernel SPEC` names: classification from what exists at the path, and the errors
for everything else."""

from pathlib import Path

import pytest

from harness import debian, kernelspec
from harness.errors import KernelNotFoundError, UsageError
from harness.kernelspec import PathFacts


def facts(path="/src/linux", *present, is_file=False, is_bzimage=False, source=None):
    return PathFacts(Path(path), exists=True, is_file=is_file, is_bzimage=is_bzimage,
                     present=frozenset(present), source_link=source)


TREE = ("Makefile", "Kconfig", "arch/x86/Kconfig")


def test_debian_specs_need_no_path():
    assert kernelspec.classify("sid", None) == kernelspec.DebianKernel(
        debian.DebianKernelSpec("sid", None))
    assert kernelspec.classify("experimental", None).spec.suite == "experimental"


def test_source_tree():
    assert kernelspec.classify("/src/linux", facts("/src/linux", *TREE, "lib/test_hmm.c")) == \
        kernelspec.SourceTree(Path("/src/linux"))


def test_tree_built_in_place():
    spec = kernelspec.classify("/src/linux", facts("/src/linux", *TREE, ".config",
                                                   kernelspec.BZIMAGE))
    assert spec == kernelspec.BuiltTree(Path("/src/linux"), Path("/src/linux"))


def test_o_directory_points_at_its_source():
    spec = kernelspec.classify("/b", facts("/b", "Makefile", ".config", kernelspec.BZIMAGE,
                                           "source", source=Path("/src/linux")))
    assert spec == kernelspec.BuiltTree(Path("/b"), Path("/src/linux"))


def test_modules_directory():
    spec = kernelspec.classify("/lib/modules/7.2", facts("/lib/modules/7.2", "vmlinuz",
                                                         "config"))
    assert spec == kernelspec.ModulesDir(Path("/lib/modules/7.2"))


def test_bzimage_with_modules_dir():
    spec = kernelspec.classify("./bzImage", facts("bzImage", is_file=True, is_bzimage=True),
                               Path("/m"))
    assert spec == kernelspec.KernelImage(Path("bzImage"), Path("/m"))


def test_tree_configured_in_place_but_not_built():
    with pytest.raises(UsageError) as error:
        kernelspec.classify("/src/linux", facts("/src/linux", *TREE, ".config"))
    assert "configured in place" in error.value.problem and "mrproper" in error.value.fix


def test_o_directory_not_built():
    with pytest.raises(UsageError, match="O= directory not built"):
        kernelspec.classify("/b", facts("/b", "Makefile", ".config"))


def test_file_that_is_not_a_bzimage():
    with pytest.raises(KernelNotFoundError, match="not a bzImage"):
        kernelspec.classify("./vmlinux", facts("vmlinux", is_file=True))


def test_missing_path_and_unknown_directory():
    with pytest.raises(KernelNotFoundError, match="does not exist"):
        kernelspec.classify("/nope", PathFacts(Path("/nope"), exists=False))
    with pytest.raises(KernelNotFoundError) as error:
        kernelspec.classify("/tmp", facts("/tmp"))
    assert "a kernel source tree" in error.value.fix


def test_modules_dir_only_goes_with_an_image():
    with pytest.raises(UsageError, match="--modules-dir goes with a bzImage"):
        kernelspec.classify("sid", None, Path("/m"))
    with pytest.raises(UsageError, match="--modules-dir goes with a bzImage file"):
        kernelspec.classify("/src/linux", facts("/src/linux", *TREE), Path("/m"))


def test_probe_reads_the_file_system(tmp_path):
    for name in TREE:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert isinstance(kernelspec.spec_from_text(str(tmp_path)), kernelspec.SourceTree)
    image = tmp_path / "bzImage"
    image.write_bytes(b"\0" * 0x202 + b"HdrS" + b"\0" * 16)
    assert kernelspec.probe(image).is_bzimage
    assert kernelspec.spec_from_text(str(image)) == kernelspec.KernelImage(image, None)


def test_labels_and_cache_keys():
    assert kernelspec.label(kernelspec.DebianKernel(debian.DEFAULT_KERNEL)) == \
        f"sid-{debian.PINNED_RELEASE}"
    assert kernelspec.label(kernelspec.SourceTree(Path("/tmp/linux-7.2"))) == "linux-7.2"
    key = kernelspec.path_key(Path("/tmp/linux-7.2"))
    assert key.startswith("linux-7.2-") and key == kernelspec.path_key(Path("/tmp/./linux-7.2"))
    assert key != kernelspec.path_key(Path("/srv/linux-7.2"))


def test_test_hmm_source_forms(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib/test_hmm.c").write_text("")
    (tmp_path / "lib/test_hmm_uapi.h").write_text("")
    assert kernelspec.test_hmm_source(tmp_path) == kernelspec.TestHmmSource(
        tmp_path / "lib/test_hmm.c", tmp_path / "lib/test_hmm_uapi.h")
    alone = tmp_path / "other.c"
    alone.write_text("")
    assert kernelspec.test_hmm_source(alone) == kernelspec.TestHmmSource(alone, None)
    with pytest.raises(UsageError, match=r"no test_hmm\.c"):
        kernelspec.test_hmm_source(tmp_path / "lib" / "nowhere")
    with pytest.raises(UsageError, match=r"not a \.c file"):
        kernelspec.test_hmm_source(tmp_path / "lib/test_hmm_uapi.h")
