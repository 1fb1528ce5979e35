"""The QEMU command line, decided without starting QEMU."""

from pathlib import Path

import pytest

from harness import qemu


def _spec(**changes):
    fields = dict(qemu="qemu-system-x86_64", accel="tcg", cpus=2, memory_mib=2048,
                  kernel_image=Path("/k/vmlinuz"), initramfs=Path("/b/initramfs.img"),
                  kernel_args=qemu.BASE_KERNEL_ARGS,
                  shares=(qemu.Share("sysroot", Path("/root")),
                          qemu.Share("results", Path("/r/guest"), read_only=False)),
                  console_log=Path("/r/console.log"), events_log=Path("/r/events.jsonl"),
                  monitor_socket=Path("/tmp/m.sock"))
    fields.update(changes)
    return qemu.VmSpec(**fields)


def _option_values(argv, option):
    return [argv[i + 1] for i, word in enumerate(argv) if word == option]


def test_guest_has_no_network_and_only_results_is_writable():
    argv = qemu.build_argv(_spec())
    assert _option_values(argv, "-nic") == ["none"]
    virtfs = _option_values(argv, "-virtfs")
    assert "local,path=/root,mount_tag=sysroot,security_model=none,readonly=on" in virtfs
    writable = [v for v in virtfs if "readonly=on" not in v]
    assert writable == ["local,path=/r/guest,mount_tag=results,security_model=none"]


def test_accelerator_and_cpu_model():
    assert _option_values(qemu.build_argv(_spec()), "-cpu") == ["max"]
    kvm = qemu.build_argv(_spec(accel="kvm"))
    assert _option_values(kvm, "-accel") == ["kvm"]
    assert _option_values(kvm, "-cpu") == ["host"]


def test_events_have_their_own_virtio_serial_port():
    argv = qemu.build_argv(_spec())
    devices = _option_values(argv, "-device")
    assert f"virtserialport,chardev=events,name={qemu.EVENTS_PORT}" in devices
    assert "file,id=events,path=/r/events.jsonl" in _option_values(argv, "-chardev")
    assert _option_values(argv, "-serial") == ["chardev:console"]


def test_private_layout_needs_no_reserved_memory():
    layout = qemu.guest_layout(coherent=False)
    assert layout.kernel_args == () and layout.module_params == ()


def test_coherent_layout_reserves_two_chunks_inside_ram():
    layout = qemu.guest_layout(coherent=True)
    assert layout.kernel_args == ("memmap=512M%0x100000000-1+0xefffffff",)
    assert layout.module_params == ("spm_addr_dev0=0x100000000", "spm_addr_dev1=0x110000000")
    assert qemu.coherent_memory_problem(layout.memory_mib) is None


@pytest.mark.parametrize("memory_mib", [2048, 3072, 4096])
def test_too_little_memory_for_coherent_is_explained(memory_mib):
    problem = qemu.coherent_memory_problem(memory_mib)
    assert problem and "0x100000000-0x120000000" in problem and f"{memory_mib} MiB" in problem


def test_kernel_args_keep_markers_unlimited():
    argv = qemu.build_argv(_spec())
    append = _option_values(argv, "-append")[0].split()
    assert "printk.devkmsg=on" in append and "panic=-1" in append


def test_a_root_image_is_a_read_only_virtio_disk():
    argv = qemu.build_argv(_spec(root_image=Path("/c/root.erofs"),
                                 shares=(qemu.Share("results", Path("/r/guest"), False),)))
    assert _option_values(argv, "-drive") == [
        "file=/c/root.erofs,format=raw,if=none,id=root,readonly=on"]
    assert "virtio-blk-pci,drive=root" in _option_values(argv, "-device")
    assert not any("sysroot" in v for v in _option_values(argv, "-virtfs"))


def test_without_a_root_image_there_is_no_disk():
    assert "-drive" not in qemu.build_argv(_spec())


def test_qboot_boots_the_kernel_where_qemu_ships_it(tmp_path):
    rom = tmp_path / "qboot.rom"
    assert qemu.direct_boot_firmware(rom) is None
    rom.write_bytes(b"\0" * 65536)
    assert qemu.direct_boot_firmware(rom) == rom
    argv = qemu.build_argv(_spec(firmware=rom))
    assert _option_values(argv, "-bios") == [str(rom)]
    assert argv.index("-bios") < argv.index("-kernel")
    assert "-bios" not in qemu.build_argv(_spec())
