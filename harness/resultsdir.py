"""Reading what an earlier run left in its results directory: results.json, with errors that
name the file and the option it was given to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.errors import UsageError

RESULTS_FILE = "results.json"


def read(path: Path, role: str, option: str) -> dict[str, Any]:
    """The results.json of a results directory (or the file itself) as written by `run`.
    `role` names it in errors ("the baseline"), `option` is what the user gave it to."""
    file = path / RESULTS_FILE if path.is_dir() else path
    try:
        data = json.loads(file.read_text())
    except OSError as error:
        raise UsageError(f"cannot read {role} {file}: {error.strerror}",
                         f"give {option} a results directory of an earlier run, or its "
                         f"{RESULTS_FILE}") from error
    except ValueError as error:
        raise UsageError(f"{role} {file} is not JSON: {error}",
                         f"give {option} the {RESULTS_FILE} an earlier run wrote") from error
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        raise UsageError(f"{role} {file} has no 'tests' list: it is not the results of a run",
                         f"give {option} the results of a single 'run' (for a matrix, one of "
                         "its kernel subdirectories)")
    return data
