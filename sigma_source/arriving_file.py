"""A result file that can be read while its download is still writing it.

Staging parses a result as it arrives instead of after the whole file is on disk, so that
the parse hides behind the download. The download's thread tells an `ArrivingFile` how
many bytes are on disk (`arrived`), when the file is whole (`complete`) and when the
download ended without it (`stopped`). A reader (`open`) gets the file as an ordinary
binary stream whose reads wait for the bytes they ask for: a read returns fewer bytes than
asked only at the end of the whole file. pyarrow's CSV reader takes such a stream as it is.

A download that starts over (a transfer broke off) writes the file again from its first
byte: a reader that had read part of the first attempt raises `DownloadRestarted`, and its
caller reads the whole file again once it is complete.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path


class DownloadRestarted(Exception):
    """The download started the file over: what was read of it is to be read again."""


class DownloadStopped(Exception):
    """The download ended without the whole file; the download's own error says why."""


class DownloadCancelled(Exception):
    """Raised in the download's thread once its reader has given up on the file."""


class ArrivingFile:
    """The file at `path` as a download writes it; readable by any number of readers."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._changed = threading.Condition()
        self._size = 0  # bytes of the current attempt on disk
        self._attempt = 0  # 0: the file is not created yet
        self._complete = False
        self._stopped: BaseException | None = None
        self._cancelled = False

    def __str__(self) -> str:  # error messages name the file as they would a path
        return str(self.path)

    # --- the download's side

    def arrived(self, size: int) -> None:
        """The download has `size` bytes of the file on disk; 0 when an attempt begins.

        Raises `DownloadCancelled` once a reader has cancelled: the download then stops.
        """
        with self._changed:
            if self._cancelled:
                raise DownloadCancelled(f"{self.path}: no longer wanted")
            if size == 0 or size < self._size:
                self._attempt += 1
            self._size = size
            self._changed.notify_all()

    def complete(self, size: int) -> None:
        """The whole file, `size` bytes, is on disk."""
        with self._changed:
            self._size, self._attempt = size, max(self._attempt, 1)
            self._complete = True
            self._changed.notify_all()

    def stopped(self, error: BaseException) -> None:
        """The download ended for good without the whole file, because of `error`."""
        with self._changed:
            self._stopped = error
            self._changed.notify_all()

    # --- the readers' side

    def open(self) -> ArrivingStream:
        """A binary stream of the file from its first byte, following the download."""
        return ArrivingStream(self)

    def wait_until_complete(self, timeout: float | None = None) -> Path | None:
        """The file's path once the whole file is on disk (None: not within `timeout`
        seconds); `DownloadStopped` if it never will be."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._complete or self._stopped is not None, timeout=timeout
            )
            self._raise_if_stopped()
            return self.path if self._complete else None

    def cancel(self) -> None:
        """Stop the download at its next chunk: no reader wants the file any more."""
        with self._changed:
            self._cancelled = True
            self._changed.notify_all()

    def _wait_for(self, position: int, wanted: int, attempt: int) -> tuple[int, int]:
        """(bytes readable at `position`, up to `wanted`; the attempt they belong to).

        Waits until `wanted` bytes are there or the file is complete (0 at its end). A
        reader that has read nothing yet takes up a new attempt as it is.
        """
        with self._changed:
            while True:
                self._raise_if_stopped()
                if attempt and self._attempt != attempt and position > 0:
                    raise DownloadRestarted(f"{self.path}: the download started over")
                if self._attempt and (attempt == 0 or position == 0):
                    attempt = self._attempt
                if attempt and (self._size - position >= wanted or self._complete):
                    return max(0, min(wanted, self._size - position)), attempt
                self._changed.wait()

    def _wait_for_restart(self, attempt: int) -> None:
        """Wait for the attempt after `attempt`: the file on disk holds fewer bytes than
        `attempt` counted, so the download has truncated it to start over."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._attempt != attempt or self._stopped is not None or self._complete
            )
            if self._attempt == attempt:
                self._raise_if_stopped()
                raise DownloadStopped(f"{self.path} holds fewer bytes than were downloaded")

    def _raise_if_stopped(self) -> None:
        if self._stopped is not None:
            raise DownloadStopped(f"{self.path}: the download stopped") from self._stopped


class ArrivingStream(io.RawIOBase):
    """One reader's position in an `ArrivingFile`; reads wait for the bytes to arrive."""

    def __init__(self, file: ArrivingFile) -> None:
        super().__init__()
        self._file = file
        self._descriptor: int | None = None
        self._attempt = 0
        self._position = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        """`size` bytes (all that remain, if negative), fewer only at the end of the file."""
        if self.closed:
            raise ValueError("read of a closed ArrivingStream")
        wanted = size if size is not None and size >= 0 else 1 << 62
        chunks: list[bytes] = []
        while wanted > 0:
            chunk = self._read_some(wanted)
            if not chunk:
                break
            chunks.append(chunk)
            wanted -= len(chunk)
        return b"".join(chunks)

    def _read_some(self, wanted: int) -> bytes:
        while True:
            readable, self._attempt = self._file._wait_for(self._position, wanted, self._attempt)
            if readable == 0:
                return b""
            data = os.pread(self._open_descriptor(), readable, self._position)
            if data:
                self._position += len(data)
                return data
            self._file._wait_for_restart(self._attempt)

    def _open_descriptor(self) -> int:
        if self._descriptor is None:
            self._descriptor = os.open(self._file.path, os.O_RDONLY)
        return self._descriptor

    def close(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
        super().close()
