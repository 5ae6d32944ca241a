"""Safe tar.gz handling: round trips, and archives that try to write outside their destination."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from localcloud.sagemaker.archive import UnsafeArchiveError, extract_tar_safely, make_tar_gz


def build(path: Path, members: list[tuple[str, str, str | bytes]]) -> Path:
    """A tar.gz of (kind, name, content-or-link-target) members, written exactly as given."""
    with tarfile.open(path, "w:gz") as tar:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = payload.encode() if isinstance(payload, str) else payload
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = str(payload)
                tar.addfile(info)
            elif kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = str(payload)
                tar.addfile(info)
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
    return path


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "dest"


def assert_nothing_extracted(dest: Path) -> None:
    assert not dest.exists() or not any(dest.iterdir())


def test_a_directory_round_trips_with_relative_names(tmp_path: Path, dest: Path) -> None:
    # Given a model directory with nested files, an empty directory and an inner symlink
    source = tmp_path / "model"
    (source / "sub" / "deeper").mkdir(parents=True)
    (source / "empty").mkdir()
    (source / "model.joblib").write_bytes(b"\x00\x01model")
    (source / "sub" / "deeper" / "notes.txt").write_text("hello")
    (source / "latest").symlink_to("model.joblib")

    # When it is archived and extracted again
    archive = make_tar_gz(source, tmp_path / "model.tar.gz")
    extract_tar_safely(archive, dest)

    # Then names are relative (like `tar -C model .`), content and the link survive, owners are blank
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert all(m.uid == 0 and m.uname == "" for m in tar.getmembers())
    assert names == sorted(names)
    assert set(names) == {"empty", "latest", "model.joblib", "sub", "sub/deeper", "sub/deeper/notes.txt"}
    assert (dest / "model.joblib").read_bytes() == b"\x00\x01model"
    assert (dest / "sub" / "deeper" / "notes.txt").read_text() == "hello"
    assert os.readlink(dest / "latest") == "model.joblib"
    assert (dest / "empty").is_dir()


def test_an_empty_directory_gives_an_empty_archive(tmp_path: Path, dest: Path) -> None:
    (tmp_path / "model").mkdir()
    archive = make_tar_gz(tmp_path / "model", tmp_path / "model.tar.gz")
    assert extract_tar_safely(archive, dest) == []


def test_the_archive_is_not_archived_into_itself(tmp_path: Path) -> None:
    source = tmp_path / "out"
    source.mkdir()
    (source / "a.txt").write_text("a")
    archive = make_tar_gz(source, source / "out.tar.gz")
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["a.txt"]


def test_hard_links_inside_the_archive_round_trip(tmp_path: Path, dest: Path) -> None:
    archive = build(tmp_path / "a.tar.gz", [("file", "data.bin", "x" * 10), ("hardlink", "copy.bin", "data.bin")])
    extract_tar_safely(archive, dest)
    assert (dest / "copy.bin").read_text() == "x" * 10


def test_a_source_symlink_pointing_outside_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "model"
    source.mkdir()
    (source / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="passwd links outside it"):
        make_tar_gz(source, tmp_path / "model.tar.gz")


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([("file", "../evil.txt", "x")], "'../evil.txt' points outside the destination"),
        ([("file", "a/../../evil.txt", "x")], "points outside the destination"),
        ([("file", "/tmp/evil.txt", "x")], "'/tmp/evil.txt' has an absolute path"),
        ([("symlink", "etc", "/etc")], "symbolic link to the absolute path '/etc'"),
        ([("symlink", "up", "../..")], "symbolic link to '../..', outside the destination"),
        ([("dir", "d", ""), ("symlink", "d/up", "../../x")], "outside the destination"),
        ([("symlink", "here", "."), ("file", "here/x.txt", "x")], "inside a symbolic link of the same archive"),
        ([("symlink", "a", "b"), ("symlink", "b", "c")], "through another link"),
        ([("symlink", "a", "b/.."), ("symlink", "b", ".")], "through another link"),
        ([("hardlink", "shadow", "/etc/shadow")], "hard link to '/etc/shadow', outside the destination"),
        ([("hardlink", "up", "../secret")], "hard link to '../secret', outside the destination"),
        ([("hardlink", "ghost", "missing.txt")], "not a file earlier in the archive"),
        ([("fifo", "pipe", "")], "special file"),
    ],
    ids=[
        "dot-dot",
        "nested-dot-dot",
        "absolute",
        "absolute-symlink",
        "symlink-up",
        "nested-symlink-up",
        "write-through-symlink",
        "symlink-chain",
        "symlink-chain-declared-later",
        "absolute-hardlink",
        "hardlink-up",
        "hardlink-to-nothing",
        "fifo",
    ],
)
def test_unsafe_members_are_refused_before_anything_is_written(
    tmp_path: Path, dest: Path, members: list[tuple[str, str, str]], message: str
) -> None:
    # Given an archive with a harmless file first, then the unsafe member
    archive = build(tmp_path / "evil.tar.gz", [("file", "harmless.txt", "ok"), *members])

    # When it is extracted, Then it is refused with the member named, and nothing is written
    with pytest.raises(UnsafeArchiveError, match=message) as raised:
        extract_tar_safely(archive, dest)
    assert "evil.tar.gz" in str(raised.value)
    assert_nothing_extracted(dest)
    assert not (tmp_path / "evil.txt").exists()


def test_uncompressed_tar_is_read_too(tmp_path: Path, dest: Path) -> None:
    path = tmp_path / "plain.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("train.py")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"print"))
    extract_tar_safely(path, dest)
    assert (dest / "train.py").read_text() == "print"
