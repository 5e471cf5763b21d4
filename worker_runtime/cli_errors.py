"""How ``jobqueue`` says what went wrong: one line on stderr, never a traceback for a user's mistake;
exit code 2 for a usage error (an argument, an option, a ``JOBQUEUE_*`` value), 1 for a runtime one
(Redis unreachable or refusing us, a port in use, a module that fails on import).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Mapping

import pydantic

USAGE = 2
RUNTIME = 1


class CommandError(Exception):
    """A failure the command reports as one line, with its exit code."""

    def __init__(self, message: str, code: int = RUNTIME) -> None:
        super().__init__(one_line(message))
        self.code = code


def one_line(text: str) -> str:
    return "; ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def described(exc: BaseException) -> str:
    """``Type: message (file, line N)``, the place being the innermost frame of the code that
    raised (for a SyntaxError, the line it points at)."""
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({_relative(exc.filename)}, line {exc.lineno})"
    else:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
        if frames:
            where = f" ({_relative(frames[-1].filename)}, line {frames[-1].lineno})"
    message = str(exc).strip()
    return one_line(f"{type(exc).__name__}: {message}{where}" if message else f"{type(exc).__name__}{where}")


def _relative(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive
        return path
    return path if relative.startswith("..") else relative


def settings_problem(exc: pydantic.ValidationError, options: Mapping[str, str]) -> str:
    """The first invalid setting, named as the user gave it: the command-line option
    (``options``: field -> option) or the ``JOBQUEUE_*`` variable."""
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else ""
    given = error.get("input")
    name = options.get(field) or f"JOBQUEUE_{field.upper()}"
    return f"{name}={given!r}: {error['msg']}"
