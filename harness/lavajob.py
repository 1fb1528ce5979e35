"""Pure: a LAVA job definition for LAVA's QEMU device type that runs the HMM suites.

The job boots the kernel with the harness's LAVA initramfs, which mounts the guest root from a
read-only squashfs disk under a tmpfs overlay and leaves a root shell on the serial console;
LAVA's test shell then runs `harness.guest.lava`, which reports each test as a LAVA test case.
Nothing here reads or writes files: `harness.lavaprep` prepares the artefacts.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from harness import qemu
from harness.errors import UsageError
from harness.guest import protocol

# The artefacts of a job, as named in its output directory and under --artifact-url.
KERNEL, RAMDISK, ROOTFS, MODULE = "vmlinuz", "initramfs.cpio.gz", "rootfs.squashfs", "test_hmm.ko"
ARTIFACTS = (KERNEL, RAMDISK, ROOTFS, MODULE)
# Where the LAVA initramfs expects test_hmm.ko, which LAVA adds to it as an overlay; the
# initramfs init copies it beside the rest of the build in the guest root.
MODULE_PATH_IN_RAMDISK = protocol.MODULE_PATH
# The prompt of the root shell the LAVA initramfs leaves on the console.
SHELL_PROMPT = "hmm-harness-lava# "
TEST_DEFINITION = "hmm"

# What the LAVA boot needs of a kernel on top of test_hmm's options: the guest root comes
# from a virtio disk holding a zstd squashfs, made writable with an overlay.
REQUIRED_KCONFIG = {
    "CONFIG_VIRTIO_BLK": "the guest root is a virtio disk",
    "CONFIG_SQUASHFS": "the guest root image is a squashfs",
    "CONFIG_SQUASHFS_ZSTD": "the squashfs is zstd-compressed",
    "CONFIG_OVERLAY_FS": "a tmpfs overlay makes the read-only root writable",
}
# Modules the LAVA initramfs loads unless the kernel has them built in, in load order.
RAMDISK_MODULES = {"virtio_blk": "CONFIG_VIRTIO_BLK", "squashfs": "CONFIG_SQUASHFS",
                   "overlay": "CONFIG_OVERLAY_FS"}


@dataclass(frozen=True)
class LavaJobOptions:
    artifact_url: str  # the artefacts are at ARTIFACT_URL/NAME
    release: str  # of the kernel, for the job's name
    mode: str = "private"
    keyword: str | None = None
    suites: tuple[str, ...] = ("tests/guest",)
    test_timeout: int = 120
    run_timeout: int = 5400  # the test action's timeout: every test of the selection
    cpus: int = 2
    memory_mib: int | None = None
    kvm: bool = True  # False: the job asks for TCG (context no_kvm)
    extra_kernel_args: tuple[str, ...] = ()


def check_artifact_url(url: str) -> None:
    parts = urlsplit(url)
    served = parts.scheme in ("http", "https") and bool(parts.netloc)
    local = parts.scheme == "file" and parts.path.startswith("/")
    if not (served or local):
        raise UsageError(f"--artifact-url {url!r} is not an http(s):// or file:// URL",
                         "give the URL the job's artefacts will be served from, e.g. "
                         "--artifact-url https://files.example.org/hmm/ or "
                         "--artifact-url file:///srv/hmm-lava")


def artifact_url(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}"


def kernel_problems(options_set: dict[str, str]) -> list[str]:
    """Why this kernel configuration cannot boot the LAVA job's guest, one line each."""
    return [f"{name} is not set ({reason})" for name, reason in REQUIRED_KCONFIG.items()
            if options_set.get(name) not in ("y", "m")]


def ramdisk_modules(options_set: dict[str, str]) -> list[str]:
    return [name for name, option in RAMDISK_MODULES.items() if options_set.get(option) != "y"]


def kernel_args(options: LavaJobOptions) -> tuple[str, ...]:
    layout = qemu.guest_layout(options.mode != "private", options.memory_mib)
    # LAVA waits for the kernel's banner ("Linux version"), which `quiet` keeps off the console.
    base = tuple(a for a in qemu.BASE_KERNEL_ARGS if a != "quiet")
    return (*base, *layout.kernel_args, *options.extra_kernel_args)


def runner_argv(options: LavaJobOptions) -> list[str]:
    """The command the test definition runs in the guest, from /hmm/project."""
    layout = qemu.guest_layout(options.mode != "private", options.memory_mib)
    argv = ["python3", "-m", "harness.guest.lava", f"--mode={options.mode}",
            f"--test-timeout={options.test_timeout}"]
    argv += [f"--module-param={p}" for p in layout.module_params]
    if options.keyword:
        argv += ["-k", options.keyword]
    return argv + list(options.suites)


def _seconds(value: int) -> dict[str, int]:
    return {"seconds": value} if value % 60 else {"minutes": value // 60}


DEPLOY_MINUTES, BOOT_MINUTES = 10, 5


def build_job(options: LavaJobOptions, sha256: dict[str, str] | None = None) -> dict[str, Any]:
    """The job definition, as the dict LAVA's schema validates. `sha256` gives the
    checksums of the artefacts by name, for LAVA to check what it downloads."""
    sums = sha256 or {}
    layout = qemu.guest_layout(options.mode != "private", options.memory_mib)

    def image(name: str, image_arg: str, **extra: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {"url": artifact_url(options.artifact_url, name),
                                 "image_arg": image_arg}
        if name in sums:
            entry["sha256sum"] = sums[name]
        return entry | extra

    module: dict[str, Any] = {"url": artifact_url(options.artifact_url, MODULE),
                              "format": "file", "path": MODULE_PATH_IN_RAMDISK}
    if MODULE in sums:
        module["sha256sum"] = sums[MODULE]
    append = " ".join(kernel_args(options))
    images = {
        "kernel": image(KERNEL, f'-kernel {{kernel}} -append "{append}"'),
        # LAVA adds its test shell overlay and test_hmm.ko to the initramfs itself.
        "ramdisk": image(RAMDISK, "-initrd {ramdisk}", format="cpio.newc", compression="gz",
                         overlays={"lava": True, "test_hmm": module}),
        "rootfs": image(ROOTFS, "-drive format=raw,if=virtio,readonly=on,file={rootfs}"),
    }
    context: dict[str, Any] = {
        "arch": "amd64",
        "memory": layout.memory_mib,
        # A panic (oops=panic) reboots, and -no-reboot ends QEMU: LAVA sees the guest gone
        # instead of waiting for the test action's timeout.
        "extra_options": ["-smp", str(options.cpus), "-no-reboot"],
    }
    if not options.kvm:
        context["no_kvm"] = "True"
    steps = [f"cd {protocol.GUEST_PROJECT}", shlex.join(runner_argv(options))]
    definition = {
        "metadata": {"format": "Lava-Test Test Definition 1.0", "name": TEST_DEFINITION,
                     "description": "the HMM suites of hmm-harness against test_hmm"},
        "run": {"steps": steps},
    }
    test_timeout = options.run_timeout
    name = f"hmm-harness {options.release} {options.mode}" + \
        (f" -k {options.keyword}" if options.keyword else "")
    return {
        "device_type": "qemu",
        "job_name": name[:200],
        "visibility": "public",
        "priority": "medium",
        "context": context,
        "metadata": {"hmm-harness.kernel": options.release, "hmm-harness.mode": options.mode,
                     "hmm-harness.keyword": options.keyword or "",
                     "hmm-harness.test-timeout": str(options.test_timeout)},
        "timeouts": {
            "job": _seconds(test_timeout + 60 * (DEPLOY_MINUTES + BOOT_MINUTES + 5)),
            "action": {"minutes": DEPLOY_MINUTES},
            "connection": {"minutes": 2},
        },
        "actions": [
            {"deploy": {"to": "tmpfs", "os": "debian", "timeout": {"minutes": DEPLOY_MINUTES},
                        "images": images}},
            {"boot": {"method": "qemu", "media": "tmpfs", "timeout": {"minutes": BOOT_MINUTES},
                      "prompts": [SHELL_PROMPT]}},
            {"test": {"timeout": _seconds(test_timeout),
                      "definitions": [{"from": "inline", "name": TEST_DEFINITION,
                                       "path": f"inline/{TEST_DEFINITION}.yaml",
                                       "repository": definition}]}},
        ],
    }


def local_device(qemu_binary: str = "qemu-system-x86_64", memory_mib: int = 2048,
                 kvm: bool = False) -> dict[str, Any]:
    """A device dictionary for running a job with `lava-run` on this machine, as
    lava-server would render it from its qemu device-type template (which is not installed
    with lava-dispatcher): one amd64 QEMU, serial console on stdio, no network."""
    options = ["-nographic", "-nodefaults", "-serial", "mon:stdio", "-m", str(memory_mib),
               "-nic", "none"]
    options += ["-enable-kvm", "-cpu", "host"] if kvm else ["-accel", "tcg", "-cpu", "max"]
    return {
        "available_architectures": ["amd64"],
        "constants": {"shutdown-message": "The system is going down for reboot NOW",
                      "kernel-start-message": "Linux version [0-9]",
                      "default-shell-prompt": "lava-test: # ",
                      "spawn_maxread": "4092",
                      "failure_retry": 1, "boot_retry": 1,
                      "posix": {"lava_test_sh_cmd": "/bin/sh",
                                "lava_test_results_dir": "/lava-%s",
                                "lava_test_shell_file": "~/.bashrc"},
                      "barebox": {"interrupt-prompt": "", "interrupt-character": "",
                                  "final-message": "", "error-messages": []},
                      "u-boot": {"interrupt-prompt": "", "interrupt-character": "",
                                 "interrupt_ctrl_list": [], "interrupt-newline": True,
                                 "final-message": "", "error-messages": [], "dfu-download": ""},
                      "grub": {"reset-message": ""},
                      "cyclone": {"reset-message": ""}},
        "parameters": {},
        "actions": {
            "deploy": {"methods": {"image": {"parameters": {"guest": {
                "size": 512, "interface": "virtio", "driveid": "lavatest"}}}}},
            "boot": {"connections": {"serial": None},
                     "methods": {"qemu": {"parameters": {"command": qemu_binary,
                                                         "options": options}}}},
        },
        "timeouts": {"actions": {}, "connections": {}},
    }


def local_device_for(job: dict[str, Any], qemu_binary: str = "qemu-system-x86_64",
                     kvm: bool = False) -> dict[str, Any]:
    """local_device() with the job's context applied as the device-type template would."""
    context = job.get("context", {})
    device = local_device(qemu_binary, int(context.get("memory", 2048)), kvm)
    device["actions"]["boot"]["methods"]["qemu"]["parameters"]["options"] += \
        [str(o) for o in context.get("extra_options", [])]
    return device


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if value is None:
        return "null"
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text)  # a YAML double-quoted scalar takes JSON's escapes


def to_yaml(data: Any, indent: int = 0) -> str:
    """Block-style YAML of dicts, lists and scalars (the job needs no more)."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, dict | list) and value:
                lines.append(f"{pad}{_scalar(key)}:")
                lines.append(to_yaml(value, indent + 2).rstrip("\n"))
            else:
                empty = "{}" if isinstance(value, dict) else "[]" if isinstance(value, list) \
                    else _scalar(value)
                lines.append(f"{pad}{_scalar(key)}: {empty}")
    elif isinstance(data, list):
        for item in data:
            if isinstance(item, dict | list) and item:
                nested = to_yaml(item, indent + 2).splitlines()
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines += nested[1:]
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(pad + _scalar(data))
    return "\n".join(lines) + "\n"
