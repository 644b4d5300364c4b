"""Files written whole or not at all: the project's one atomic writer.

Records, splits, the synthetic data and its labels, submissions and the reports' JSON files are all written
through `atomic_file`: a temporary file beside the target, renamed onto it (`os.replace`) once complete, so a
reader (another worker, a crashed run's next try) never sees half a file, and a failure leaves the previous
file (or none) and no temporary behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    """The process's umask, read from /proc/self/status where Linux shows it, so no write changes it; elsewhere
    set and restored at once (os.umask is the only portable reader)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path, mode: str = "wb"):
    """Yield a handle (`mode` "wb" or "w") on a temporary file in `path`'s folder (made if missing); when the block
    ends without an error the file takes `path`'s name at once, with the mode `open` gives a new file (0666 less
    the umask, not the temporary's private 0600). If the block raises, the temporary is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json_atomic(path, payload) -> None:
    """Write `payload` as JSON (indent 1, sorted keys) at `path` through `atomic_file`."""
    with atomic_file(path, "w") as handle:
        json.dump(payload, handle, indent=1, sort_keys=True)
