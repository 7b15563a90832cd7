"""Paths and URIs: where data is read from and where Ray Train keeps unit runs on a cluster.

A local path or a `file://` URI is a filesystem path (on a multi-node cluster it must be
on storage every node mounts). Other URIs (`s3://`, `gs://`, `hdfs://`, `abfs://`) go
through pyarrow's filesystems, the layer Ray Train itself uses for `storage_path`; only
`file://` can be exercised without a cloud account, the others are passed on unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
# Schemes pyarrow.fs.FileSystem.from_uri resolves (file is handled here as a path).
REMOTE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def scheme(text: str) -> str | None:
    match = _SCHEME.match(str(text))
    return match.group(1).lower() if match else None


def local_path(text: str | Path) -> Path | None:
    """The filesystem path of a plain path or a file:// URI; None for a remote URI."""
    kind = scheme(str(text))
    if kind is None:
        return Path(text)
    if kind == "file":
        return Path(unquote(urlparse(str(text)).path))
    return None


def uri_problems(text: str, what: str) -> list[str]:
    """Why `text` cannot be a storage location (unknown scheme); checked without network access."""
    kind = scheme(text)
    if kind is None or kind == "file" or kind in REMOTE_SCHEMES:
        return []
    return [f"{what} {text!r}: unknown URI scheme {kind!r}; use a path, file://, or one of "
            f"{', '.join(s + '://' for s in REMOTE_SCHEMES)}"]


# Set by Ray in the entrypoint of a `ray job submit` job (and the processes it starts),
# which runs in a temporary copy of the working directory that goes with the job.
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
# Experiments of a job that leaves output_dir at its default: on the node that runs the
# job's driver (the head), outside the job's temporary working directory.
JOB_OUTPUT_DIR = "~/raysum-outputs"


def in_ray_job() -> bool:
    import os

    return RAY_JOB_ENV in os.environ


def job_output_dir(storage_path: str | None) -> str:
    """output_dir inside a Ray job when none is given: ``<storage_path>/outputs`` when
    storage_path is an absolute filesystem path (storage every node mounts), else
    ``~/raysum-outputs`` of the user running the job, made absolute."""
    local = local_path(storage_path) if storage_path else None
    if local is not None and local.is_absolute():
        return str(local / "outputs")
    return str(Path(JOB_OUTPUT_DIR).expanduser())


# What a path flag must name: an existing file or directory, or where a new one can be made.
PATH_KINDS = ("file", "dir", "new_file", "new_dir")


def path_problems(text: str | Path, what: str, kind: str) -> list[str]:
    """Why ``text`` cannot serve as ``kind`` (see PATH_KINDS): missing, a file where a
    directory is needed or the reverse, or not writable. Remote URIs are not checked here."""
    import os

    path = local_path(text)
    if path is None:
        return []
    if kind in ("file", "dir"):
        if not path.exists():
            return [f"{what} {str(text)!r}: no such {'file' if kind == 'file' else 'directory'}"]
        if kind == "file" and not path.is_file():
            return [f"{what} {str(text)!r} is a directory, not a file"]
        if kind == "dir" and not path.is_dir():
            return [f"{what} {str(text)!r} is a file, not a directory"]
        return []
    if path.exists():
        if kind == "new_dir" and not path.is_dir():
            return [f"{what} {str(text)!r} is an existing file; give a directory"]
        if kind == "new_file" and path.is_dir():
            return [f"{what} {str(text)!r} is a directory; give a file name"]
    parent = path if kind == "new_dir" else path.parent
    parent = parent.absolute()
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return [f"{what} {str(text)!r}: {parent} is a file, so nothing can be created under it"]
    target = path if path.exists() and kind == "new_dir" else parent
    if not os.access(target, os.W_OK | os.X_OK):
        return [f"{what} {str(text)!r}: {target} is not writable"]
    return []


def read_bytes(text: str | Path) -> bytes:
    """The bytes of a file given as a path or URI (remote URIs through pyarrow.fs).
    Raises FileNotFoundError or OSError like a local read."""
    path = local_path(text)
    if path is not None:
        return path.read_bytes()
    from pyarrow import fs

    filesystem, inner = fs.FileSystem.from_uri(str(text))
    info = filesystem.get_file_info(inner)
    if info.type == fs.FileType.NotFound:
        raise FileNotFoundError(str(text))
    if info.type == fs.FileType.Directory:
        raise IsADirectoryError(str(text))
    with filesystem.open_input_stream(inner) as stream:
        return stream.read()


def write_atomic(path: str | Path, write) -> Path:
    """Write a file through ``write(temp_path)`` into a temporary file beside ``path``, then
    rename it over ``path``: a reader never sees a half-written file, and an interrupted
    write leaves the previous version in place."""
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(temp))
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda temp: temp.write_text(text, encoding="utf-8"))
