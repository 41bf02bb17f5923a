"""Write output files atomically: a reader never sees half a report, a failure leaves no debris."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from inspect_tools.errors import InspectError


def write_atomically(path: str, write: Callable[[str], None]) -> int:
    """Call ``write(tmp_path)`` then rename onto ``path``; returns the size in bytes."""
    target = Path(path)
    if target.is_dir():
        raise InspectError(f"cannot write {path}: it is a directory")
    if not target.parent.exists():
        raise InspectError(f"cannot write {path}: directory {target.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report is an ordinary file
        os.replace(tmp, target)
    except OSError as exc:
        raise InspectError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target.stat().st_size


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
