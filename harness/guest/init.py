"""PID 1 of the guest once the root is mounted: run pytest as planned, report, power off."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

# Before the project's own imports; protocol.GUEST_PROJECT names the same share.
sys.path.insert(0, "/hmm/project")

from harness.guest import kernelsettings, protocol

if TYPE_CHECKING:
    from typing import Any

# PID 1 imports only what every boot needs: under TCG each module costs tens of milliseconds
# before the first test (traceback 0.36 s, the C selftest's runner 0.3 s), so the rest is
# imported where it is used.


def configure_kernel() -> None:
    kernelsettings.apply(kernelsettings.GUEST_SETTINGS)


# The status of a pytest child that died before pytest could give one (pytest's own are 0-5).
PYTEST_CRASHED = 70


def round_suffix(plan: dict[str, Any]) -> str:
    return "" if plan.get("round", 1) == 1 else f"-{plan['round']}"


def pytest_argv(plan: dict[str, Any]) -> list[str]:
    """The pytest command line of this round, as a process of its own would run it."""
    return [sys.executable, "-m", "pytest", *pytest_args(plan)]


def pytest_args(plan: dict[str, Any]) -> list[str]:
    argv = ["-p", "harness.guest.plugin",
            "-c", f"{protocol.GUEST_PROJECT}/tests/guest/pytest.ini",
            "--rootdir", protocol.GUEST_PROJECT,
            *protocol.PYTEST_PLUGIN_OPTIONS, "-rfEs",
            f"--hmm-mode={plan['mode']}",
            f"--timeout={plan['test_timeout']}",
            f"--junitxml={protocol.GUEST_RESULTS}/guest-junit{round_suffix(plan)}.xml"]
    argv += [f"--hmm-module-param={p}" for p in plan["module_params"]]
    if "seed" in plan:
        argv += [f"--hmm-seed={plan['seed']}", f"--hmm-explore={plan['explore']}"]
    if plan.get("bench_pairs"):
        argv.append(f"--hmm-bench-pairs={plan['bench_pairs']}")
    if plan.get("stateful_unsafe"):
        argv.append("--hmm-stateful-unsafe")
    if plan.get("replay"):
        argv.append(f"--hmm-replay={protocol.GUEST_RESULTS}/{plan['replay']}")
    if plan.get("repeat", 1) > 1:
        argv.append(f"--hmm-repeat={plan['repeat']}")
    if plan.get("keep"):
        argv.append(f"--hmm-keep={protocol.GUEST_RESULTS}/{plan['keep']}")
    elif plan.get("shard"):
        argv.append(f"--hmm-shard={plan['shard']}")
        if plan.get("durations"):
            argv.append(f"--hmm-durations={protocol.GUEST_RESULTS}/{plan['durations']}")
    # Tests that already have an outcome from an earlier boot of this run.
    argv += [f"--deselect={nodeid}" for nodeid in plan.get("deselect", [])]
    if plan.get("keyword"):
        argv += ["-k", str(plan["keyword"])]
    argv += [f"{protocol.GUEST_PROJECT}/{path}" for path in plan["suites"]]
    return argv


def run_pytest_forked(args: list[str], env: dict[str, str], output_path: str) -> int:
    """`python3 -m pytest ARGS` as a child of this process, not a new interpreter: under TCG
    an interpreter's own start costs 0.4 s before the first test."""
    pid = os.fork()
    if pid == 0:
        status = PYTEST_CRASHED
        try:
            output = os.open(output_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(output, 1)
            os.dup2(output, 2)
            os.chdir("/tmp")
            os.environ.clear()
            os.environ.update(env)
            sys.path[:0] = env["PYTHONPATH"].split(":")
            sys.dont_write_bytecode = True
            import pytest
            status = int(pytest.main(args))
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status)


def run(events: protocol.EventChannel) -> int:
    configure_kernel()
    with open(protocol.PLAN_FILE) as f:
        plan = json.load(f)
    # Bytecode comes precompiled from the host; the guest can write none (read-only share).
    env = {**os.environ, "PYTHON_COLORS": "0", "PYTHONPATH": protocol.GUEST_PYTHONPATH,
           "PYTHONDONTWRITEBYTECODE": "1",
           "HOME": "/root", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR": "/tmp",
           protocol.EVENTS_FD_VARIABLE: str(events.fileno())}
    argv = pytest_argv(plan)
    boot_times = protocol.boot_times(os.environ.get(protocol.BOOT_TIMES_VARIABLE, ""))
    events.send("guest-started", release=os.uname().release, argv=argv,
                boot_times=boot_times)
    status = run_pytest_forked(pytest_args(plan), env,
                               f"{protocol.GUEST_RESULTS}/pytest-output{round_suffix(plan)}.log")
    # 0: passed, 1: some failed, 5: nothing left for pytest in this boot
    if plan.get("reference") and status in (0, 1, 5):
        # After the Python suites, so whatever the C cases do to the kernel cannot change
        # the Python results of this boot.
        from harness.guest import reference
        reference.run(events, plan["mode"], plan.get("keyword"), plan.get("deselect", []),
                      float(plan["test_timeout"]))
    return status


def main() -> None:
    try:
        device = protocol.find_events_device()
        if device is None:
            raise RuntimeError(f"no virtio-serial port named {protocol.EVENTS_PORT_NAME}")
        events = protocol.EventChannel.open(device)
        try:
            status = run(events)
            events.send("guest-exit", status=status)
        except BaseException:
            import traceback
            events.send("guest-error", message=traceback.format_exc())
            raise
    except BaseException:
        # Without an events channel the console is the only way out.
        import traceback
        print(f"hmm-harness: guest init failed:\n{traceback.format_exc()}", flush=True)
    finally:
        os.sync()
        os.execv("/bin/busybox", ["busybox", "poweroff", "-f"])


if __name__ == "__main__":
    main()
