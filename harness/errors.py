"""Typed errors. The CLI maps them to exit codes, nowhere else."""


class HarnessError(Exception):
    """The harness could not build, boot or run: `git bisect run` should skip (exit 125)."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}\n  fix: {fix}" if fix else problem)


class UsageError(HarnessError):
    """A bad option or argument on the command line."""


class MissingToolError(HarnessError):
    """A host program the harness needs is not installed."""


class CommandFailedError(HarnessError):
    """An external command (apt, mmdebstrap, make, ...) exited non-zero."""


class KernelNotFoundError(HarnessError):
    """The requested kernel does not exist or cannot be obtained."""


class KernelConfigError(HarnessError):
    """The kernel lacks options test_hmm or the suites need."""


class ModuleMismatchError(HarnessError):
    """test_hmm.ko was not built for the kernel that will boot."""


class ResultsDirError(HarnessError):
    """The results directory cannot be written."""


class GuestSetupError(HarnessError):
    """The guest booted but could not set up what the tests need (module, devices)."""


class SpmError(HarnessError):
    """The machine's soft-reserved memory cannot give test_hmm its coherent chunks."""


class HostNotReadyError(HarnessError):
    """The machine the harness runs on cannot run the suites on its own kernel as it is."""


class LostVMError(HarnessError):
    """The guest ended without reporting a status."""


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped the harness. Not a HarnessError: the run did not fail to
    start, it was cancelled, and the exit status says so (128 + the signal's number)."""

    def __init__(self, signal_number: int, signal_name: str) -> None:
        self.signal_number = signal_number
        self.signal_name = signal_name
        # The run's results as written when it stopped, if it got that far.
        self.report: object | None = None
        super().__init__(f"stopped by {signal_name}")
