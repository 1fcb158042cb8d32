"""The modes new files and folders get, for writers that create them privately first.

``tempfile.mkstemp`` makes a file ``0600`` and ``mkdtemp`` a folder ``0700``, whatever the
umask; an atomic writer that renames such a file into place would leave a shared registry,
cache or results file readable by its owner only. These give the mode ``open()`` or ``mkdir``
would have given instead.
"""

from __future__ import annotations

import os
import threading

__all__ = ["current_umask", "new_file_mode", "new_dir_mode", "chmod_like_new_file"]

_lock = threading.Lock()


def current_umask() -> int:
    """The process's umask (read from ``/proc`` where possible: setting it is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode of a new regular file: ``0666`` less the umask (``0644`` for umask 022)."""
    return 0o666 & ~current_umask()


def new_dir_mode() -> int:
    """The mode of a new folder: ``0777`` less the umask (``0755`` for umask 022)."""
    return 0o777 & ~current_umask()


def chmod_like_new_file(path: str | os.PathLike[str]) -> None:
    """Give ``path`` (a private temporary file) the mode a newly created file would have."""
    os.chmod(path, new_file_mode())
