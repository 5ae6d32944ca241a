"""tar.gz archives for SageMaker artifacts: source directories, model.tar.gz, output.tar.gz.

Archives come from users' S3 buckets, so extraction refuses anything that could write outside
the destination (absolute names, ``..``, links pointing out, paths through links, devices) and
says which member and why, before a single file is written. ``tarfile``'s "data" filter then
guards the extraction itself as a second line, against anything the up-front check missed.
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path, PurePosixPath

__all__ = ["UnsafeArchiveError", "extract_tar_safely", "make_tar_gz"]


class UnsafeArchiveError(ValueError):
    """An archive (or a directory to archive) that would not stay inside its destination."""


def _inside(path: PurePosixPath) -> PurePosixPath | None:
    """The normalised relative path, or None when it is absolute or climbs out with ``..``."""
    if path.is_absolute():
        return None
    parts: list[str] = []
    for part in path.parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return PurePosixPath(*parts)


def _walk(start: PurePosixPath, target: PurePosixPath, links: set[PurePosixPath]) -> PurePosixPath | str:
    """Resolve target from start one component at a time: the path, or why it is unsafe."""
    parts = list(start.parts)
    for part in target.parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return "outside the destination"
            parts.pop()
            continue
        parts.append(part)
        if PurePosixPath(*parts) in links:
            return "through another link"
    return PurePosixPath(*parts)


def _check_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    """Refuse the whole archive if any member could land (or point) outside the destination.

    Links are judged against every symlink in the archive, whatever the order: a path that
    passes through a symlink member cannot be judged lexically, so it is refused.
    """
    links = {n for m in members if m.issym() and (n := _inside(PurePosixPath(m.name))) is not None}
    files: set[PurePosixPath] = set()  # regular files seen so far: the only hard link targets

    def refuse(member: tarfile.TarInfo, why: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"unsafe archive {archive.name}: member {member.name!r} {why}; nothing extracted")

    for member in members:
        if PurePosixPath(member.name).is_absolute():
            raise refuse(member, "has an absolute path")
        name = _inside(PurePosixPath(member.name))
        if name is None:
            raise refuse(member, "points outside the destination with '..'")
        if any(parent in links for parent in name.parents):
            raise refuse(member, "is inside a symbolic link of the same archive")
        if member.issym():
            if PurePosixPath(member.linkname).is_absolute():
                raise refuse(member, f"is a symbolic link to the absolute path {member.linkname!r}")
            resolved = _walk(name.parent, PurePosixPath(member.linkname), links)
            if isinstance(resolved, str):
                raise refuse(member, f"is a symbolic link to {member.linkname!r}, {resolved}")
        elif member.islnk():
            target = PurePosixPath(member.linkname)
            walked = "outside the destination" if target.is_absolute() else _walk(PurePosixPath(), target, links)
            if isinstance(walked, str):
                raise refuse(member, f"is a hard link to {member.linkname!r}, {walked}")
            if walked not in files:
                raise refuse(member, f"is a hard link to {member.linkname!r}, not a file earlier in the archive")
            files.add(name)
        elif member.isfile():
            files.add(name)
        elif not member.isdir():
            raise refuse(member, "is a device, FIFO or other special file")


def extract_tar_safely(archive: Path, dest: Path) -> list[Path]:
    """Extract a tar archive (any compression tarfile reads) into dest; returns the paths written.

    Raises UnsafeArchiveError, naming the member, when the archive would escape dest.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        _check_members(archive, members)
        try:
            tar.extractall(dest, filter="data")
        except tarfile.FilterError as exc:
            raise UnsafeArchiveError(f"unsafe archive {archive.name}: {exc}") from exc
    return [dest / m.name for m in members]


def _owner_free(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Artifacts must not carry the local user's ids and names into S3."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def make_tar_gz(source_dir: Path, archive: Path) -> Path:
    """Archive source_dir's contents (member names relative to it, like ``tar -C dir .``) as gzip.

    Symbolic links are kept as links when they point inside source_dir; one pointing outside is
    refused (UnsafeArchiveError), since it would leak a local file or fail to extract in SageMaker.
    The archive itself is skipped if it lies inside source_dir.
    """
    source = source_dir.resolve()
    target = archive.resolve()
    entries: list[Path] = []
    for root, dirs, names in os.walk(source):
        dirs.sort()
        for name in sorted([*dirs, *names]):
            path = Path(root) / name
            if path == target:
                continue
            if path.is_symlink():
                pointed = (path.parent / os.readlink(path)).resolve()
                if not pointed.is_relative_to(source):
                    raise UnsafeArchiveError(
                        f"cannot archive {source_dir}: {path.relative_to(source)} links outside it, to {pointed}"
                    )
            elif not (path.is_dir() or stat.S_ISREG(path.lstat().st_mode)):
                raise UnsafeArchiveError(f"cannot archive {source_dir}: {path.relative_to(source)} is a special file")
            entries.append(path)
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
        for path in sorted(entries, key=lambda p: p.relative_to(source).as_posix()):
            tar.add(path, arcname=path.relative_to(source).as_posix(), recursive=False, filter=_owner_free)
    return archive
