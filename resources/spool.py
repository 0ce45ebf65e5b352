"""A source download that its readers consume while it arrives: a thread writes the bytes to a
spool file in the run's work directory, hashing them on the way, and each reader starts at the
first byte and waits for more until the last one is in. The sort starts with the first megabyte
instead of after the last; the spool is the one copy of the source a step can read again (the
already-sorted check's fallback, the error messages that quote a line) without a second download.

Nothing built from a spool may be published before ``result()`` returned: it is what verifies the
catalog checksum (a mismatch raises ChecksumMismatch, and the readers saw bytes that are not the
file's). A transient failure mid-body resumes where the bytes stopped (a Range request), with
backoff, up to the fetcher's retries; the readers never see the gap.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from resources.fetch_errors import ChecksumMismatch, FetchError

__all__ = ["Download", "LocalSource", "Spool"]


@dataclass(frozen=True)
class Download:
    """A complete, verified source on local disk."""

    path: Path
    size: int
    md5: str
    sha256: str


class Spool:
    """Downloads ``chunks`` (a function of the offset to resume from) into ``path`` in a thread."""

    local = False  # the bytes are a copy in the work directory

    def __init__(
        self,
        chunks: Callable[[int], Iterator[bytes]],
        path: Path,
        checksum: str | None,
        describe: str,
        progress: Callable[[int], None] | None = None,
        retries: int = 3,
        backoff_s: float = 1.0,
    ):
        self.path, self._chunks, self._checksum, self._describe = path, chunks, checksum, describe
        self._progress, self._retries, self._backoff_s = progress, retries, backoff_s
        self._changed = threading.Condition()
        self._size = 0
        self._done = self._stopped = False
        self._error: BaseException | None = None
        self._download: Download | None = None
        if not self.local:
            path.touch()  # readers may open it at once
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"spool-{path.name}")
        self._thread.start()

    def reader(self) -> io.BufferedReader:
        """A new stream over the source from its first byte; reading past the bytes in waits for
        more, and raises the download's error if it failed."""
        return io.BufferedReader(_Reader(self), buffer_size=1024 * 1024)

    def result(self) -> Download:
        """Wait for the last byte; the verified download, or the download's error."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._download

    def close(self) -> None:
        """Stop downloading (the step ended early) and wait for the thread."""
        self._stopped = True
        self._thread.join()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self) -> None:
        md5, sha = hashlib.md5(), hashlib.sha256()
        try:
            with open(os.devnull if self.local else self.path, "wb") as out:
                attempt = 0
                while True:
                    try:
                        for chunk in self._chunks(self._size):  # resume after the bytes already in
                            if self._stopped:
                                return
                            out.write(chunk)
                            out.flush()  # readers read the file, not this buffer
                            md5.update(chunk)
                            sha.update(chunk)
                            with self._changed:
                                self._size += len(chunk)
                                self._changed.notify_all()
                            if self._progress:
                                self._progress(self._size)
                        break
                    except FetchError as exc:
                        attempt += 1
                        if exc.permanent or attempt > self._retries:
                            raise
                    time.sleep(self._backoff_s * 2 ** (attempt - 1))
            got = Download(self.path, self._size, md5.hexdigest(), sha.hexdigest())
            self._verify(got)
            self._download = got
        except BaseException as exc:  # noqa: BLE001 - kept for result() and the readers
            self._error = exc
        finally:
            with self._changed:
                self._done = True
                self._changed.notify_all()

    def _verify(self, got: Download) -> None:
        if not self._checksum:
            return
        algo, _, expected = self._checksum.partition(":")
        actual = got.md5 if algo == "md5" else got.sha256
        if actual != expected:
            raise ChecksumMismatch(
                f"The source bytes do not match the catalog checksum: expected {algo} {expected}, got "
                f"{actual} ({got.size} bytes from {self._describe}). The upstream file changed or the "
                "catalog is stale; re-sync the catalog."
            )

    def _wait_beyond(self, offset: int) -> bool:
        """Block until the spool holds more than ``offset`` bytes (True) or is finished (False)."""
        with self._changed:
            while self._size <= offset and not self._done:
                self._changed.wait()
            if self._size > offset:
                return True
            if self._error is not None and not self._stopped:
                raise self._error
            return False


class LocalSource(Spool):
    """A source already on this machine (file://): the tools read the file itself, no copy, while the
    thread only hashes it; ``result()`` still verifies the checksum before anything is published.
    For trusted local catalogs only (production refuses file:// sources): a file changed while it is
    read could give a verified checksum for bytes the tools did not see."""

    local = True

    def __init__(self, path: Path, checksum: str | None, describe: str,
                 progress: Callable[[int], None] | None = None, chunk: int = 1024 * 1024):
        def chunks(offset: int) -> Iterator[bytes]:
            with open(path, "rb") as fh:
                fh.seek(offset)
                while block := fh.read(chunk):
                    yield block

        super().__init__(chunks, path, checksum, describe, progress, retries=0)

    def reader(self) -> io.BufferedReader:
        return open(self.path, "rb")


class _Reader(io.RawIOBase):
    def __init__(self, spool: Spool):
        self._spool = spool
        self._file = open(spool.path, "rb")
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self._spool._wait_beyond(self._offset):
            return 0
        count = self._file.readinto(buffer)
        self._offset += count
        return count

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()
