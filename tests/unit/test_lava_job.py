"""The LAVA job from `harness lava-job`, checked with LAVA's own schema (Debian's lava-common).

lava-common is a Debian package for the system's Python (/usr/bin/python3), which the
project's venv may not be (another version, no system site-packages). Rather than add
dist-packages to a Python it was not built for, the job goes as JSON to /usr/bin/python3,
which validates it with lava_common.schemas; the test skips when that Python lacks it.
"""

import json
import subprocess
from pathlib import Path

import pytest

from harness import cli, lavajob
from harness.errors import UsageError
from harness.guest import lava as guest_lava

SYSTEM_PYTHON = Path("/usr/bin/python3")
VALIDATOR = """
import json, sys
from lava_common.schemas import validate
from lava_common.schemas.device import validate as validate_device
data = json.load(sys.stdin)
try:
    validate(data["job"], strict=True, extra_context_variables=[])
    validate_device(data["device"])
except Exception as error:
    print(f"{type(error).__name__}: {error}")
    sys.exit(1)
"""


def _lava_common_missing() -> str:
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} does not exist"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import lava_common.schemas, yaml"],
                           capture_output=True, text=True)
    return "" if probe.returncode == 0 else \
        "lava-common is not installed for /usr/bin/python3 (apt-get install lava-common)"


needs_lava_common = pytest.mark.skipif(bool(_lava_common_missing()),
                                       reason=_lava_common_missing() or "lava-common")


def lava_validate(job: dict, device: dict | None = None) -> str:
    """LAVA's verdict on the job (and a device dictionary): "" when valid."""
    data = {"job": job, "device": device or lavajob.local_device()}
    proc = subprocess.run([SYSTEM_PYTHON, "-c", VALIDATOR], input=json.dumps(data),
                          capture_output=True, text=True)
    return proc.stdout.strip() or proc.stderr.strip()


def yaml_round_trip(text: str) -> object:
    """What PyYAML (LAVA's parser) reads from the job file."""
    proc = subprocess.run([SYSTEM_PYTHON, "-c", "import json, sys, yaml; "
                           "print(json.dumps(yaml.safe_load(sys.stdin)))"],
                          input=text, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


SUMS = {name: f"{i:064x}" for i, name in enumerate(lavajob.ARTIFACTS)}


def _options(**changes) -> lavajob.LavaJobOptions:
    values = {"artifact_url": "https://files.example.org/hmm/", "release": "7.2.13+deb14-amd64"}
    return lavajob.LavaJobOptions(**values | changes)


@needs_lava_common
@pytest.mark.parametrize("changes", [
    {}, {"mode": "coherent", "keyword": "migrate and not huge"},
    {"mode": "all", "kvm": False, "cpus": 1, "test_timeout": 45, "run_timeout": 600},
    {"artifact_url": "file:///srv/hmm-lava"},
])
def test_the_job_is_valid_for_lava(changes):
    job = lavajob.build_job(_options(**changes), SUMS)
    assert lava_validate(job, lavajob.local_device_for(job)) == ""


@needs_lava_common
def test_the_schema_check_catches_a_broken_job():
    job = lavajob.build_job(_options())
    job["actions"][1]["boot"]["method"] = "qemu-typo"
    assert "qemu" in lava_validate(job)


@needs_lava_common
def test_the_yaml_file_reads_back_as_the_job():
    job = lavajob.build_job(_options(keyword="open_close or 'x: y'"), SUMS)
    assert yaml_round_trip(lavajob.to_yaml(job)) == job


def test_deploy_boot_and_test_actions():
    job = lavajob.build_job(_options(mode="coherent", keyword="migrate"), SUMS)
    deploy, boot, test = (next(iter(a.values())) for a in job["actions"])
    assert job["device_type"] == "qemu" and deploy["to"] == "tmpfs"
    images = deploy["images"]
    assert set(images) == {"kernel", "ramdisk", "rootfs"}
    assert images["kernel"]["url"] == "https://files.example.org/hmm/vmlinuz"
    assert images["rootfs"]["sha256sum"] == SUMS[lavajob.ROOTFS]
    # The module reaches the guest as LAVA's overlay of the initramfs, beside the test shell.
    overlay = images["ramdisk"]["overlays"]
    assert overlay["lava"] is True
    assert overlay["test_hmm"]["url"].endswith("/test_hmm.ko")
    assert overlay["test_hmm"]["path"] == lavajob.MODULE_PATH_IN_RAMDISK
    # Coherent memory: the soft-reserved range and 6 GiB, as `run` gives it.
    assert "memmap=512M%0x100000000-1+0xefffffff" in images["kernel"]["image_arg"]
    assert "quiet" not in images["kernel"]["image_arg"]
    assert job["context"]["memory"] == 6144
    assert boot == {"method": "qemu", "media": "tmpfs", "timeout": {"minutes": 5},
                    "prompts": [lavajob.SHELL_PROMPT]}
    steps = test["definitions"][0]["repository"]["run"]["steps"]
    assert steps[-1] == ("python3 -m harness.guest.lava --mode=coherent --test-timeout=120 "
                         "--module-param=spm_addr_dev0=0x100000000 "
                         "--module-param=spm_addr_dev1=0x110000000 -k migrate tests/guest")


def test_timeouts_cover_the_test_action():
    job = lavajob.build_job(_options(run_timeout=1234))
    test = job["actions"][2]["test"]
    assert test["timeout"] == {"seconds": 1234}
    assert job["timeouts"]["job"]["seconds"] > 1234


def test_tcg_is_asked_for_in_the_context():
    assert "no_kvm" not in lavajob.build_job(_options())["context"]
    assert lavajob.build_job(_options(kvm=False))["context"]["no_kvm"] == "True"


@pytest.mark.parametrize("url", ["ftp://host/x", "files.example.org/hmm", "https://",
                                 "file:relative/dir", ""])
def test_bad_artifact_urls_are_refused(url):
    with pytest.raises(UsageError, match="--artifact-url"):
        lavajob.check_artifact_url(url)


def test_kernel_without_what_the_lava_boot_needs():
    options = {"CONFIG_VIRTIO_BLK": "m", "CONFIG_SQUASHFS": "y", "CONFIG_OVERLAY_FS": "m"}
    assert lavajob.kernel_problems(options) == [
        "CONFIG_SQUASHFS_ZSTD is not set (the squashfs is zstd-compressed)"]
    assert lavajob.ramdisk_modules(options) == ["virtio_blk", "overlay"]


@pytest.mark.parametrize(("nodeid", "name"), [
    ("tests/guest/test_hmm.py::test_open_close[private]", "test_hmm.test_open_close.private"),
    ("tests/guest/test_hmm2.py::test_snapshot[coherent-repeat2]",
     "test_hmm2.test_snapshot.coherent-repeat2"),
    ("tests/guest/test_x.py::TestA::test_b[a b/c]", "test_x.TestA.test_b.a_b_c"),
])
def test_lava_test_case_names(nodeid, name):
    assert guest_lava.case_name(nodeid) == name


def test_long_names_stay_distinct_within_lavas_limit():
    first = guest_lava.case_name("tests/guest/test_hmm.py::test_" + "a" * 120 + "[private]")
    second = guest_lava.case_name("tests/guest/test_hmm.py::test_" + "a" * 120 + "[coherent]")
    assert len(first) <= guest_lava.NAME_LIMIT and first != second


@pytest.mark.parametrize(("outcome", "errors", "result"), [
    ("passed", [], "pass"), ("skipped", [], "skip"), ("failed", [], "fail"),
    ("error", [], "fail"), ("passed", ["WARNING: CPU: 0 PID: 1 at mm/memremap.c:158"], "fail"),
])
def test_lava_results(outcome, errors, result):
    assert guest_lava.lava_result(outcome, errors) == result


@pytest.mark.parametrize("argv", [
    ["--artifact-url", "ftp://x"],
    ["--artifact-url", "file:///srv/x", "-k", "open_close and"],
    ["--artifact-url", "file:///srv/x", "--mode", "bogus"],
    ["--artifact-url", "file:///srv/x", "--kernel", "sid", "--kernel", "experimental"],
    [],
])
def test_bad_input_exits_125_before_any_build(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HMM_HARNESS_CACHE", str(tmp_path / "cache"))
    status = cli.main(["lava-job", "--output", str(tmp_path / "out"), *argv])
    assert status == cli.EXIT_HARNESS
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()
