"""Atomic, owner-only file writes: the one way luxxon_agent puts a file on disk.

Readers see the old file or the new one, never a torn mix, even after a
SIGKILL or a power cut: the data goes to a temp file (mode 0600 from its first
byte) in the same directory, is fsynced, renamed over the target, and the
directory is fsynced so the rename itself survives.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PRIVATE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def write_atomic(path: Path, data: bytes | str, *, mode: int = PRIVATE_MODE) -> None:
    """Replace `path` with `data` (str is UTF-8), atomically and durably.

    A missing directory is created 0700; the file ends up with `mode`
    (0600 unless a public file such as a systemd unit asks for more).
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    # mkstemp opens O_EXCL with mode 0600: no moment where others can read it
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            if mode != PRIVATE_MODE:
                os.fchmod(handle.fileno(), mode)
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
