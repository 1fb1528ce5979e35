"""A prebuilt test_hmm.ko whose vermagic does not match the kernel is refused before boot."""

import pytest

from harness import cli, modinfo

pytestmark = pytest.mark.vm


def test_module_with_foreign_vermagic_exits_125(harness_run, default_kernel, tmp_path):
    data = default_kernel.build.module.read_bytes()
    vermagic = modinfo.module_info(data)["vermagic"]
    foreign = vermagic.replace("SMP preempt", "SMP preemp_").encode()
    assert len(foreign) == len(vermagic.encode())
    patched = tmp_path / "test_hmm.ko"
    patched.write_bytes(data.replace(vermagic.encode(), foreign))
    run = harness_run("--module", str(patched), "-k", "test_open_close")
    assert run.status == cli.EXIT_HARNESS, run.output
    assert "SMP preemp_" in run.output and "but the kernel expects" in run.output
    assert "fix:" in run.output
    assert not (run.results / "console.log").exists(), "the guest must not boot"
