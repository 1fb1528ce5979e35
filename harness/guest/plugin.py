"""pytest plugin for the guest: loads test_hmm, marks each test in the kernel log, reports events.

Loaded with `-p harness.guest.plugin`. It owns the module's lifetime (loaded once per session
with the parameters the host planned) and provides the `variant` fixture the suites use.
"""

from __future__ import annotations

import importlib.util
import json
import os
import select
import subprocess
import sys
import time
import types
from typing import Any

import pytest

from harness.guest import protocol, shard

MODULE_PATH = protocol.MODULE_PATH
DEVICE_WAIT_SECONDS = 60.0


class ModuleSetupError(Exception):
    """test_hmm could not be loaded or did not create the devices the mode needs."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hmm", "HMM harness (guest side)")
    group.addoption("--hmm-mode", choices=sorted(protocol.VARIANTS_BY_MODE), default="private",
                    help="memory model(s) whose devices the suites drive")
    group.addoption("--hmm-module-param", action="append", default=[],
                    help="a test_hmm parameter (name=value); repeat for more")
    group.addoption("--hmm-no-load", action="store_true",
                    help="test_hmm is already loaded: do not insmod it")
    group.addoption("--hmm-module", metavar="KO", default=None,
                    help=f"the test_hmm.ko to load (default {MODULE_PATH}); with --hmm-no-load, "
                         "the one a test that unloads test_hmm loads again")
    group.addoption("--hmm-events", metavar="PATH",
                    help="write events to PATH instead of the harness's channel")
    group.addoption("--hmm-repeat", type=int, default=1, metavar="N",
                    help="run every selected test N times: the whole selection once, then "
                         "again, as parameters repeat1..N")
    group.addoption("--hmm-shard", metavar="K/N",
                    help="run only shard K of N of the selection (harness.guest.shard)")
    group.addoption("--hmm-durations", metavar="PATH",
                    help="JSON of nodeid -> seconds that balances --hmm-shard")
    group.addoption("--hmm-keep", metavar="PATH",
                    help="JSON list of nodeids: run only these (a later boot of a shard)")
    group.addoption("--hmm-seed", type=int, default=None, metavar="N",
                    help="the seed of the stateful suite's sequences (default: a fresh one)")
    group.addoption("--hmm-explore", type=int, default=30, metavar="N",
                    help="sequences each state machine of the stateful suite runs")
    group.addoption("--hmm-stateful-unsafe", action="store_true",
                    help="let the stateful suite make the calls its model knows crash")
    group.addoption("--hmm-bench-pairs", type=int, default=1, metavar="N",
                    help="pairs of Python and C benchmark tables bench_migration_pairs.py runs")
    group.addoption("--hmm-replay", metavar="PATH",
                    help="a recorded stateful sequence (JSON) for replay_recorded.py")


def _wait_for_devices(sock: Any, paths: list[str], deadline: float) -> None:
    pending = {os.path.basename(p) for p in paths if not os.path.exists(p)}
    while pending and time.monotonic() < deadline:
        ready, _, _ = select.select([sock.fileno()], [], [], deadline - time.monotonic())
        if not ready:
            break
        for message in sock.get():
            if message.get("ACTION") == "add":
                pending.discard(message.get("DEVNAME") or "")
        pending = {name for name in pending if not os.path.exists(f"/dev/{name}")}
    if pending:
        raise ModuleSetupError(
            "test_hmm did not create " + ", ".join(f"/dev/{n}" for n in sorted(pending))
            + " (for coherent devices the guest needs soft-reserved memory at spm_addr_dev0/1)")


def uevent_socket_class() -> Any:
    """pyroute2's UeventSocket, without running pyroute2/__init__.py: that imports every
    socket class the library has (IPDB, NDB, nftables, ...), which under TCG takes longer than
    booting the kernel. The uevent socket needs only pyroute2.netlink."""
    if "pyroute2" not in sys.modules:
        spec = importlib.util.find_spec("pyroute2")
        if spec is None or spec.submodule_search_locations is None:
            raise ModuleSetupError("pyroute2 is not installed in the guest root")
        package = types.ModuleType("pyroute2")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["pyroute2"] = package
    from pyroute2.netlink.uevent import UeventSocket

    return UeventSocket


def load_module(params: list[str], mode: str, module: str | None = None) -> None:
    """insmod test_hmm (`module`, else the harness's build of it) and wait for its devices."""
    module = module or MODULE_PATH
    sock = uevent_socket_class()()
    sock.bind()
    try:
        load = subprocess.run(["insmod", module, *params], capture_output=True, text=True)
        if load.returncode != 0:
            raise ModuleSetupError(f"insmod {module} {' '.join(params)} failed: "
                                   f"{load.stderr.strip()}")
        _wait_for_devices(sock, protocol.expected_devices(mode),
                          time.monotonic() + DEVICE_WAIT_SECONDS)
    finally:
        sock.close()


class HarnessReporter:
    """Marks test boundaries in the kernel log and streams results to the host."""

    def __init__(self, config: pytest.Config, events: protocol.EventChannel) -> None:
        self.config = config
        self.events = events
        self.seq = 0
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.timeouts: dict[str, float] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.events.send("pytest-started")
        mode = self.config.getoption("hmm_mode")
        params = self.config.getoption("hmm_module_param")
        if self.config.getoption("hmm_no_load"):
            return
        try:
            load_module(params, mode, self.config.getoption("hmm_module"))
        except ModuleSetupError as error:
            self.events.send("setup-error", message=str(error))
            raise pytest.UsageError(str(error)) from error
        self.events.send("module-loaded", params=params, devices=protocol.expected_devices(mode))

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        # Before -k and --deselect: the C reference runs the twins of the whole suite.
        with open(protocol.SUITE_FILE, "w") as suite:
            json.dump([item.nodeid for item in items], suite)
        # With --hmm-repeat the whole selection runs once, then again: each repetition meets
        # the state the tests before it left, as separate runs would.
        if int(self.config.getoption("hmm_repeat")) > 1:
            items.sort(key=lambda item: protocol.repeat_number(item.nodeid))

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        default = float(self.config.getoption("timeout", 0) or 0)
        for item in session.items:
            marker = item.get_closest_marker("timeout")
            self.timeouts[item.nodeid] = float(marker.args[0]) if marker and marker.args \
                else default
        sharded = self.config.stash.get(SHARD_SELECTION, None)
        extra = {"shard": str(sharded[0]), "selection": sharded[1]} if sharded else {}
        self.events.send("collected", nodeids=[item.nodeid for item in session.items], **extra)

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.seq += 1
        self.outcomes[nodeid] = {"outcome": "passed", "duration": 0.0, "message": ""}
        protocol.write_kmsg(protocol.begin_marker(self.seq, nodeid))
        self.events.send("test-start", nodeid=nodeid, seq=self.seq,
                         timeout=self.timeouts.get(nodeid))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = self.outcomes.setdefault(
            report.nodeid, {"outcome": "passed", "duration": 0.0, "message": ""})
        record["duration"] += report.duration
        if report.failed:
            record["outcome"] = "failed" if report.when == "call" else "error"
            record["message"] += f"[{report.when}] {report.longreprtext}\n"
        elif report.skipped and record["outcome"] == "passed":
            record["outcome"] = "skipped"
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            record["message"] = reason.removeprefix("Skipped: ")

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        protocol.write_kmsg(protocol.end_marker(self.seq, nodeid))
        self.events.send("test-result", nodeid=nodeid, seq=self.seq, **self.outcomes[nodeid])

    @pytest.hookimpl(trylast=True)
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Last, so that the repetition is the last parameter of every nodeid."""
        repeat = int(self.config.getoption("hmm_repeat"))
        if repeat > 1:
            metafunc.fixturenames.append(protocol.REPEAT_FIXTURE)
            metafunc.parametrize(protocol.REPEAT_FIXTURE, range(1, repeat + 1),
                                 ids=protocol.repeat_id)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.events.send("session-finish", exitstatus=int(exitstatus))


# The shard and the whole selection it was cut from, for the host's merge to check.
SHARD_SELECTION = pytest.StashKey[tuple[shard.Shard, list[str]]]()


def _read_json(path: str) -> Any:
    with open(path) as file:
        return json.load(file)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Last: a shard is cut from what -k selected, before --deselect could matter (a first
    boot deselects nothing; later boots of a shard name their tests with --hmm-keep)."""
    keep_file, shard_text = config.getoption("hmm_keep"), config.getoption("hmm_shard")
    nodeids = [item.nodeid for item in items]
    if keep_file:
        keep = set(_read_json(keep_file))
    elif shard_text:
        part = shard.parse(shard_text)
        durations_file = config.getoption("hmm_durations")
        durations = _read_json(durations_file) if durations_file else {}
        keep = set(shard.select(nodeids, part, durations))
        config.stash[SHARD_SELECTION] = (part, nodeids)
    else:
        return
    config.hook.pytest_deselected(items=[item for item in items if item.nodeid not in keep])
    items[:] = [item for item in items if item.nodeid in keep]


def pytest_configure(config: pytest.Config) -> None:
    # Outside the harness's guest (pytest run by hand) events go to a file instead.
    explicit = config.getoption("hmm_events")
    events = (protocol.EventChannel.open(explicit) if explicit else None) \
        or protocol.EventChannel.inherited() \
        or protocol.EventChannel.open(os.path.join(protocol.GUEST_RESULTS, "events.jsonl"))
    config.pluginmanager.register(HarnessReporter(config, events), "hmm-harness-reporter")


@pytest.fixture(name=protocol.REPEAT_FIXTURE)
def repetition(request: pytest.FixtureRequest) -> int:
    """Which repetition of --hmm-repeat this is."""
    return int(getattr(request, "param", 1))


@pytest.fixture
def harness_events(request: pytest.FixtureRequest) -> protocol.EventChannel:
    """The channel this session's results go to, for a suite that streams more (the stateful
    suite's steps): in a guest the harness's port, on a host the run's events file."""
    reporter = request.config.pluginmanager.get_plugin("hmm-harness-reporter")
    assert isinstance(reporter, HarnessReporter), "harness.guest.plugin registers its reporter"
    return reporter.events


@pytest.fixture
def record_measurement(request: pytest.FixtureRequest,
                       harness_events: protocol.EventChannel) -> Any:
    """Send a benchmark figure to the host: record_measurement(kind=..., seconds=..., ...)."""

    def record(**fields: Any) -> None:
        harness_events.send("measurement", nodeid=request.node.nodeid, **fields)

    return record


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "variant" in metafunc.fixturenames:
        variants = protocol.VARIANTS_BY_MODE[metafunc.config.getoption("hmm_mode")]
        metafunc.parametrize("variant", variants, ids=[v.name for v in variants])
