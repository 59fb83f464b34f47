"""Serving a recording's file, for the admin's player and the API alike: which file,
HTTP Range requests (one byte range: 206 with Content-Range; unsatisfiable: 416), and
the RecordingAccess row every fetch writes.

The body is an async iterator reading the file a block at a time in a thread: under ASGI
a sync iterator (FileResponse's too) is read whole into memory before the first byte goes
out, and a recording may be gigabytes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header

from calls.errors import CallbridgeError, ErrorCode
from calls.models import AccessAction, Recording, RecordingAccess, RecordingState
from calls.recordings import recordings_dir

BLOCK = 64 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(CallbridgeError):
    def __init__(self, size: int, message: str) -> None:
        super().__init__(ErrorCode.INVALID_ARGUMENT, message, details={"size": size})
        self.size = size


def playable_file(recording: Recording) -> Path | None:
    """The recording's file, if it may be played: finished, not purged, on disk."""
    if recording.purged_at is not None or recording.state != RecordingState.FINISHED:
        return None
    file = recordings_dir() / recording.file_name
    return file if file.is_file() else None


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range `header` asks of `size` bytes, as (first, last) inclusive; None
    for the whole file (no header, or another unit). Several ranges, a malformed one or
    one past the end: RangeNotSatisfiable."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes":
        return None  # a unit we do not serve: the whole file (RFC 9110 §14.2)
    match = _RANGE.match(f"bytes={spec.strip()}")
    if match is None or (not match[1] and not match[2]):
        raise RangeNotSatisfiable(size, "Range: one range of bytes, e.g. bytes=0-1023")
    if not match[1]:  # a suffix: the last N bytes
        length = int(match[2])
        if length == 0 or size == 0:
            raise RangeNotSatisfiable(size, "Range: an empty suffix")
        return max(size - length, 0), size - 1
    first = int(match[1])
    last = min(int(match[2]), size - 1) if match[2] else size - 1
    if first >= size or (match[2] and int(match[2]) < first):
        raise RangeNotSatisfiable(size, f"Range: the file has {size} bytes")
    return first, last


def _open(file: Path) -> BinaryIO:
    return file.open("rb")


async def _read(file: Path, first: int, last: int) -> AsyncIterator[bytes]:
    handle = await sync_to_async(_open, thread_sensitive=False)(file)
    try:
        await sync_to_async(handle.seek, thread_sensitive=False)(first)
        left = last - first + 1
        while left > 0:
            block = await sync_to_async(handle.read, thread_sensitive=False)(min(BLOCK, left))
            if not block:
                return
            left -= len(block)
            yield block
    finally:
        handle.close()


def file_response(
    file: Path, range_header: str | None, *, download: bool, filename: str
) -> StreamingHttpResponse:
    """The whole file (200) or the asked range (206); RangeNotSatisfiable is the caller's
    to answer (416). Both read the file a block at a time (a recording may be gigabytes)."""
    size = file.stat().st_size
    wanted = byte_range(range_header, size)
    first, last = wanted if wanted is not None else (0, size - 1)
    response = StreamingHttpResponse(_read(file, first, last), content_type="audio/wav")
    if wanted is not None:
        response.status_code = 206
        response["Content-Range"] = f"bytes {first}-{last}/{size}"
    response["Content-Length"] = str(last - first + 1)
    response["Content-Disposition"] = content_disposition_header(download, filename) or ""
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "no-store"
    return response


def log_access(
    recording: Recording, *, user: Any, username: str, download: bool, ip: str | None
) -> RecordingAccess:
    """One row per fetch (whole file or a range), written before any byte is sent."""
    return RecordingAccess.objects.create(
        recording=recording,
        user=user,
        username=username[:150],
        action=AccessAction.DOWNLOAD if download else AccessAction.LISTEN,
        ip=ip,
    )
