"""`harness lava-job`'s job, run for real by LAVA's own dispatcher (`lava-run`, Debian's
lava-dispatcher) on this machine, with the device dictionary the command writes beside it and
file:// artefact URLs: LAVA deploys the artefacts, adds its test shell and test_hmm.ko to the
initramfs, boots QEMU, logs in at the prompt and collects one test case per test."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from harness.paths import PROJECT_ROOT

pytestmark = pytest.mark.vm

# lava-run logs one YAML flow mapping per line; a result line names its case, its test
# definition (0_hmm: the job's first test definition) and the result.
RESULT = re.compile(r'"lvl": "results", "msg": \{"case": "([^"]+)", "definition": "([^"]+)"'
                    r'.*"result": "([a-z]+)"')


def lava_results(log: str) -> dict[tuple[str, str], str]:
    return {(m.group(2), m.group(1)): m.group(3) for m in RESULT.finditer(log)}


@pytest.mark.skipif(shutil.which("lava-run") is None,
                    reason="lava-run is not installed (apt-get install lava-dispatcher)")
@pytest.mark.skipif(os.geteuid() != 0, reason="lava-run keeps its files in /var/lib/lava")
def test_lava_runs_the_job_and_collects_the_test_cases(tmp_path):
    out = tmp_path / "artefacts"
    made = subprocess.run([sys.executable, "-m", "harness", "lava-job", "--output", str(out),
                           "--artifact-url", out.as_uri(), "-k", "open_close or anon_read_prot",
                           "--accel", "tcg", "--cpus", "1", "--run-timeout", "600"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800)
    assert made.returncode == 0, made.stderr[-4000:]
    # A job id of its own: lava-run works in /var/lib/lava/dispatcher/tmp/ID.
    proc = subprocess.run(["lava-run", "--device", str(out / "local-device.yaml"),
                           "--job-id", str(900000 + os.getpid() % 100000),
                           "--output-dir", str(tmp_path / "lava"), str(out / "job.yaml")],
                          capture_output=True, text=True, timeout=1200)
    log = proc.stdout + proc.stderr
    (tmp_path / "lava-run.log").write_text(log)
    results = lava_results(log)
    print("\n".join(f"{d} {c}: {r}" for (d, c), r in results.items()))
    assert proc.returncode == 0, log[-6000:]
    assert results[("lava", "job")] == "pass"
    cases = {case: result for (definition, case), result in results.items()
             if definition == "0_hmm"}
    assert cases == {"test_hmm.test_open_close.private": "pass",
                     "test_hmm.test_anon_read_prot.private": "pass"}
