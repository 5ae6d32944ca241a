"""The model.tar.gz a package serves: the trained model with the run's inference code under code/.

Endpoints and batch transforms run isolated, so the code must be inside the archive: the SageMaker Python
SDK v2's repack. Both archives come from S3, so members are checked as they stream: names stay inside, only
regular files and directories. docs/PIPELINES.md, "Network isolation".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, TYPE_CHECKING

from shepherd.errors import InvalidInput

if TYPE_CHECKING:  # tarfile's import costs ~10 ms of a cold start; EvaluateModel reads SUBMIT_DIRECTORY only
    import tarfile

CODE_DIR = "code"
SUBMIT_DIRECTORY = f"/opt/ml/model/{CODE_DIR}"
# Unpacked bytes of model and code together: the repacked archive is written to a Lambda's /tmp (512 MB by
# default), and a gzip'd copy of incompressible data is no smaller than the data.
MAX_UNPACKED_BYTES = 400 * 2**20
_COMPRESS_LEVEL = 6  # tarfile's default of 9 costs about twice the CPU for a few percent


@dataclass(frozen=True)
class RepackedModel:
    model_files: int
    code_files: int
    unpacked_bytes: int
    replaced_code: int  # files of the model's own code/ left out for the run's


def member_path(name: str) -> PurePosixPath | None:
    """A member's name relative to the archive's root, or None for the root itself ('.', './').

    Raises InvalidInput for an absolute name or one with a '..' component, however it would resolve.
    """
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise InvalidInput(f"member {name!r} is absolute or has a '..' component: names must stay inside")
    parts = [part for part in path.parts if part != "."]
    return PurePosixPath(*parts) if parts else None


class _Writer:
    """The output tar: members in the order given, owners cleared, sizes counted against the limit."""

    def __init__(self, tar: tarfile.TarFile, limit: int) -> None:
        self.tar, self.limit, self.size = tar, limit, 0
        self.names: set[PurePosixPath] = set()

    def add(self, path: PurePosixPath, member: tarfile.TarInfo, data: IO[bytes] | None, where: str) -> None:
        import tarfile

        if path in self.names:
            raise InvalidInput(f"{where}: member {member.name!r} appears twice")
        self.names.add(path)
        self.size += member.size if member.isfile() else 0
        if self.size > self.limit:
            raise InvalidInput(
                f"{where}: the model and its code unpack to more than {self.limit // 2**20} MB, the most "
                f"RegisterModel repacks; keep large files out of the model directory and the code directory"
            )
        info = tarfile.TarInfo(path.as_posix())
        info.type = tarfile.REGTYPE if member.isfile() else tarfile.DIRTYPE
        info.size = member.size if member.isfile() else 0
        info.mode = (member.mode & 0o777) or (0o644 if member.isfile() else 0o755)
        info.mtime = member.mtime
        self.tar.addfile(info, data)


def _copy(
    archive: IO[bytes], writer: _Writer, where: str, *, into: PurePosixPath | None, skip: PurePosixPath | None
) -> tuple[int, int, set[PurePosixPath]]:
    """Stream archive's files and directories into writer (under into); returns (files copied, skipped, names)."""
    import gzip
    import tarfile
    import zlib

    copied = skipped = 0
    names: set[PurePosixPath] = set()
    try:
        with tarfile.open(fileobj=archive, mode="r|*") as tar:
            for member in tar:
                try:
                    path = member_path(member.name)
                except InvalidInput as exc:
                    raise InvalidInput(f"{where}: {exc}") from None
                if not (member.isfile() or member.isdir()):
                    kind = "a link" if member.issym() or member.islnk() else "a device, FIFO or other special file"
                    raise InvalidInput(f"{where}: member {member.name!r} is {kind}; only files and directories")
                if path is None:
                    continue
                if skip is not None and (path == skip or skip in path.parents):
                    skipped += member.isfile()
                    continue
                target = into / path if into is not None else path
                writer.add(target, member, tar.extractfile(member) if member.isfile() else None, where)
                if member.isfile():
                    copied += 1
                    names.add(path)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InvalidInput(f"{where} is not a readable tar archive: {exc}") from exc
    return copied, skipped, names


def repack(
    model: IO[bytes],
    source: IO[bytes],
    out: IO[bytes],
    *,
    program: str,
    model_uri: str = "model.tar.gz",
    source_uri: str = "sourcedir.tar.gz",
    limit: int = MAX_UNPACKED_BYTES,
) -> RepackedModel:
    """Write to out a gzip'd tar of the model's members and the source dir's under code/.

    A code/ the model already holds is left out, as the SDK replaces it with the source dir; the
    output is reproducible (zero gzip mtime, members in input order, owners cleared), so a retry
    writes the same bytes. Raises InvalidInput naming the archive and member that cannot be used.
    """
    import gzip
    import tarfile

    code = PurePosixPath(CODE_DIR)
    with (
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=_COMPRESS_LEVEL) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        writer = _Writer(tar, limit)
        model_files, replaced, _ = _copy(model, writer, model_uri, into=None, skip=code)
        directory = tarfile.TarInfo(CODE_DIR)
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        writer.add(code, directory, None, source_uri)
        code_files, _, names = _copy(source, writer, source_uri, into=code, skip=None)
    if PurePosixPath(program) not in names:
        raise InvalidInput(f"{source_uri} holds no {program}, the inference entry point")
    return RepackedModel(model_files, code_files, writer.size, replaced)


def hosting_archive_uri(source_uri: str) -> str:
    """The run's repacked model.tar.gz: beside its sourcedir.tar.gz, under artifacts/<model>/<run>/."""
    folder, _, name = source_uri.rpartition("/")
    if not source_uri.startswith("s3://") or name != "sourcedir.tar.gz" or folder.count("/") < 3:
        raise InvalidInput(f"{source_uri!r} is not a run's s3://bucket/artifacts/<model>/<run>/sourcedir.tar.gz")
    return f"{folder}/model.tar.gz"
