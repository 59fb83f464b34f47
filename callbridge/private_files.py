"""Everything callbridge writes is private to its user: no group or other permissions.

Recordings, packet captures, rendered WAVs, uploaded audio, the SQLite database (and its
-wal/-shm), the generated secret key: personal data and secrets. Rather than chmod each
file where it is written, every callbridge process starts with umask 077 (`manage.py` and
`callbridge.asgi` call `restrict_new_files()` before Django loads), which child processes
(the WAV renderer) inherit; Django's upload settings say 0600/0700 explicitly.
`secure_data_directories()` closes the data and media folders of installs that were created
before, so older files inside them are out of others' reach too.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

PRIVATE_UMASK = 0o077
PRIVATE_DIRECTORY_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def restrict_new_files() -> None:
    os.umask(PRIVATE_UMASK)


def private_directories() -> list[Path]:
    """The folders holding personal data and secrets."""
    from django.conf import settings

    media = Path(settings.MEDIA_ROOT)
    directories = [Path(settings.DATA_DIR), media, media / "recordings"]
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        directories.append(Path(database["NAME"]).parent)
    return directories


def secure_data_directories(directories: Iterable[Path] | None = None) -> None:
    """Create each folder (0700) or take group/other permissions off an existing one that
    this user owns (a shared mount owned by someone else is left as its admin set it)."""
    for directory in private_directories() if directories is None else directories:
        directory.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
        status = directory.stat()
        if status.st_uid == os.getuid() and stat.S_IMODE(status.st_mode) & 0o077:
            with contextlib.suppress(PermissionError):
                directory.chmod(stat.S_IMODE(status.st_mode) & 0o700)
