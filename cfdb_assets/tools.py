"""The tool runner: shell pipelines under ``bash -o pipefail`` in their own process group (killed
whole on cancellation), with ``LC_ALL=C`` and temp files in the run's work directory; the tools'
versions (recorded in every manifest); and the scrubbing of paths from public errors. Pure: imports
neither Dagster nor Starlette.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import signal
import subprocess
import threading
from pathlib import Path
from typing import BinaryIO

__all__ = ["ToolError", "run", "scrub", "tool_versions"]

# A path alone or inside a file:// URL; the path of an http(s) URL stays (it names the upstream).
_PATH = re.compile(r"(?:(?<=file://)|(?<![\w.:/]))/(?:[\w.+-]+/)*[\w.+-]+")


# What a tool says when the machine, not the file, is at fault (a retry on a bigger task can pass).
_EXHAUSTED = ("No space left on device", "Cannot allocate memory", "Out of memory", "Killed")


class ToolError(Exception):
    """A tool failed; the message carries the tail of its stderr with paths scrubbed."""

    permanent = False  # a killed or starved tool may well succeed next time

    def __init__(self, message: str, returncode: int | None = None):
        super().__init__(message)
        self.returncode = returncode

    @property
    def resource_exhausted(self) -> bool:
        """The tool was killed (by a signal, the OOM killer) or ran out of disk or memory: the
        machine's fault, never the file's."""
        killed = self.returncode is not None and (self.returncode < 0 or self.returncode in (137, 143))
        return killed or any(text in str(self) for text in _EXHAUSTED)


def scrub(text: str) -> str:
    """Replace absolute paths with ``<path>`` (job errors are public)."""
    return _PATH.sub("<path>", text)


# bash runs the pipeline in the background of its own process group and, on SIGTERM, kills that
# whole group: the group dies with its worker whichever way the worker goes. A cancelled run raises
# in this thread (and _kill_group follows); a worker killed outright (SIGKILL, the OOM killer) sends
# bash its parent-death signal (setpriv --pdeathsig), so no sort or samtools outlives it.
# The explicit `0<&0` keeps stdin: bash gives a background command /dev/null otherwise.
_GUARDED = 'trap "trap - TERM; kill -KILL 0" TERM; ( {cmd}\n) 0<&0 & wait $!'


def run(cmd: str, cwd: Path, stdin: BinaryIO | None = None, cancel: threading.Event | None = None,
        pass_fds: tuple[int, ...] = ()) -> str:
    """Run ``cmd`` under bash -o pipefail in its own process group, tied to this process's life;
    return stdout. Raises ToolError (with the tail of stderr, paths scrubbed) on a non-zero exit.

    ``stdin``: a binary stream copied to the command's standard input by a thread (a download still
    arriving: see resources/spool.py); an error raised while reading it is raised here, before the
    tool's own. ``cancel``: set it from another thread to kill the command's whole group.
    ``pass_fds``: descriptors the command inherits under their own numbers (cfdb_assets.stream_index)."""
    env = {**os.environ, "LC_ALL": "C", "TMPDIR": str(cwd)}
    feed_from = None
    if stdin is not None:
        feed_from, feed_to = os.pipe()
    proc = subprocess.Popen(
        ["setpriv", "--pdeathsig", "TERM", "--", "bash", "-o", "pipefail", "-c", _GUARDED.format(cmd=cmd)],
        cwd=cwd, env=env, start_new_session=True, pass_fds=pass_fds,
        stdin=subprocess.DEVNULL if feed_from is None else feed_from,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
    )
    feeder = None
    if feed_from is not None:
        os.close(feed_from)
        feeder = _Feeder(stdin, feed_to)
    if cancel is not None:
        threading.Thread(target=_kill_when, args=(cancel, proc), daemon=True).start()
    try:
        out, err = proc.communicate()
    except BaseException:
        _kill_group(proc)
        raise
    if feeder:
        # A tool that stopped reading on its own (it needed only the head) leaves the feeder
        # waiting for bytes nobody will read: it ends with the download, not with this call.
        feeder.join(timeout=0.2)
        if feeder.error:
            raise feeder.error
    if proc.returncode != 0:
        tail = "\n".join(err.strip().splitlines()[-8:])[-800:]
        tool = cmd.split()[0]
        raise ToolError(f"{tool} failed (exit {proc.returncode}): {scrub(tail) or 'no error output'}", proc.returncode)
    return out


class _Feeder(threading.Thread):
    """Copies a stream into a pipe's write end, then closes it. A reader that stopped early (the
    tool needed only the head, or died) ends the copy quietly; an error of the stream is kept."""

    def __init__(self, source: BinaryIO, fd: int):
        super().__init__(daemon=True, name="tool-stdin")
        self.source, self.fd, self.error = source, fd, None
        self.start()

    def run(self) -> None:
        try:
            # read1: whatever has arrived, not a full megabyte (a download may hold the rest back).
            read = getattr(self.source, "read1", self.source.read)
            while chunk := read(1024 * 1024):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(self.fd, view):]
        except BrokenPipeError:
            pass
        except Exception as exc:  # noqa: BLE001 - the download failed: the tool saw a cut-off input
            self.error = exc
        finally:
            os.close(self.fd)
            self.source.close()


def _kill_when(cancel: threading.Event, proc: subprocess.Popen) -> None:
    while proc.poll() is None:
        if cancel.wait(0.2):
            _kill_group(proc)
            return


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


@functools.cache
def tool_versions() -> dict[str, str]:
    """First version line of each tool (recorded in every manifest)."""
    versions = {}
    commands = {
        "samtools": "samtools --version",
        "htslib": "bgzip --version",
        "sort": "sort --version",
        "gffread": "gffread --version",
    }
    for tool, cmd in commands.items():
        try:
            out = subprocess.run(shlex.split(cmd), capture_output=True, check=True).stdout
            versions[tool] = out.decode(errors="replace").splitlines()[0].strip()
        except (OSError, subprocess.CalledProcessError, IndexError):
            versions[tool] = "unavailable"
    try:
        import pybigtools

        versions["pybigtools"] = pybigtools.__version__
    except (ImportError, AttributeError):
        versions["pybigtools"] = "unavailable"
    return versions
