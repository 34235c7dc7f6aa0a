"""How a stage fails: one clear line on stderr and a non-zero exit, never a traceback for bad input."""

import sys
from collections.abc import Callable


class StageError(Exception):
    """Bad input or an unusable source; the message names the file, source or param key."""


def run_stage(main: Callable[[], None]) -> None:
    try:
        main()
    except StageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
