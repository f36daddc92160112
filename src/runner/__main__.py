"""`python -m runner [overrides]`: compose the config and run its task.

User mistakes (bad keys, values or data) print one `error:` line and exit 2;
Ctrl-C exits 130 and SIGTERM (docker stop, a preemption) 143, after marking the MLflow run
KILLED (training first saves its last completed epoch: `resume=RUN_ID` goes on from there).
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    import time

    from .settings import STARTED_AT

    os.environ[STARTED_AT] = repr(time.time())
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us; we print them as one line
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per checkpoint download
    from .help import help_text, wants_help

    if wants_help(sys.argv[1:]):  # ours: fast, lists tasks and groups (--hydra-help stays Hydra's)
        print(help_text(sys.argv[1:]))
        return
    from unetlab.errors import raise_interrupted

    from .app import register, run

    signal.signal(signal.SIGTERM, raise_interrupted)  # unwind like Ctrl-C: runs end KILLED, not RUNNING
    register()
    try:
        run()
    except BaseException as error:
        end_open_sweep("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
        report(error)


def end_open_sweep(status: str) -> None:
    """A sweep that stops early still closes its parent run (with its summary so far)."""
    from .sweeps.parent import finish_sweep

    finish_sweep(status)


def report(error: BaseException) -> None:
    """Exit with one line for user mistakes and Ctrl-C; re-raise anything else (a bug: full traceback)."""
    import yaml
    from hydra.errors import HydraException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    from unetlab.errors import UnetlabError

    from .settings import one_line

    try:
        raise error
    except KeyboardInterrupt as error:
        signum = getattr(error, "signum", signal.SIGINT)
        print(f"interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        sys.exit(128 + signum)
    except UnetlabError as error:
        fail(str(error))
    except yaml.YAMLError as error:
        fail(f"invalid YAML: {' '.join(str(error).split())}")
    except (HydraException, OmegaConfBaseException) as error:
        message = one_line(error)
        if isinstance(error, OverrideParseException):
            message = f"{error.override}: {message}"
        if isinstance(error.__cause__, OmegaConfBaseException):
            message = f"{message} {one_line(error.__cause__)}"
        options = available_options(str(error))
        if options:
            message += option_hint(message, options)
        if message.startswith("Ambiguous value for argument"):  # Hydra's hint is on the lines we drop
            message += " (to sweep over it add -m; a list is key=[a,b], a string key='a,b')"
        if "Could not find 'hydra/launcher/ray" in message:
            message += " (the Ray launcher is an extra: pip install 'unetlab[ray]')"
        fail(message)


def fail(message: str) -> None:
    """Print `error: MESSAGE` (passwords in URLs masked) and exit 2."""
    from .redact import mask_secrets

    print(f"error: {mask_secrets(message)}", file=sys.stderr)
    sys.exit(2)


def option_hint(message: str, options: list[str]) -> str:
    """` (did you mean data=folder?)` when the missing option ('data/folderr') is close to one of
    `options`, else ` (options: ...)`."""
    import difflib
    import re

    missing = re.search(r"Could not find '([\w/.-]+)/([\w.-]+)'", message)
    close = difflib.get_close_matches(missing.group(2), options, n=1) if missing else []
    if close:
        return f" (did you mean {missing.group(1).rsplit('/', 1)[-1]}={close[0]}?)"
    return f" (options: {', '.join(options)})"


def available_options(text: str) -> list[str]:
    """The options Hydra lists under 'Available options in ...' (on lines a one-line error drops)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Available options")), None)
    if start is None:
        return []
    options = []
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        if not line.startswith((" ", "\t")):  # the next section (Hydra's config search path)
            break
        options.append(line.strip())
    return options


if __name__ == "__main__":
    main()
