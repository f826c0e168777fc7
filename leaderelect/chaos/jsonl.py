"""Read a JSON-lines history that another process may be appending to right now."""

from __future__ import annotations

import json
import os
from typing import Any


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records on the file's complete lines; a last line still being written is left out.

    The file is read in one ``read()``: iterating over a growing file can yield a partial last
    line at one end of file and, on the next step, the rest of that line as a line of its own,
    which then does not parse."""
    with open(path) as fh:
        text = fh.read()
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]
