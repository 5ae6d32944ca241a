"""Tests for shepherd.model_archive: the trained model repacked with its inference code under code/."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from shepherd.errors import InvalidInput
from shepherd.model_archive import RepackedModel, hosting_archive_uri, member_path, repack

from localcloud.sagemaker.archive import extract_tar_safely

MODEL = {"model.joblib": b"pickled forest", "extra/encoder.json": b"{}"}
SOURCE = {"train.py": b"print('train')\n", "inference.py": b"def model_fn(d):\n    return d\n", "lib/util.py": b"X=1"}

Member = tuple[str, str, bytes | str]  # (kind, name, data or link target)


def tar_gz(members: list[Member] | dict[str, bytes]) -> bytes:
    entries = [("file", n, d) for n, d in members.items()] if isinstance(members, dict) else members
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for kind, name, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = payload if isinstance(payload, bytes) else payload.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
                "device": tarfile.CHRTYPE,
            }[kind]
            info.linkname = str(payload)
            tar.addfile(info)
    return buffer.getvalue()


def repacked(
    model: bytes, source: bytes | None = None, program: str = "inference.py", **limits: int
) -> tuple[bytes, RepackedModel]:
    out = io.BytesIO()
    summary = repack(io.BytesIO(model), io.BytesIO(source or tar_gz(SOURCE)), out, program=program, **limits)
    return out.getvalue(), summary


def files_of(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


# ---------------------------------------------------------------- what the archive holds


def test_the_model_files_are_kept_and_the_source_dir_lands_under_code() -> None:
    # Given a trained model.tar.gz and the run's sourcedir.tar.gz
    archive, summary = repacked(tar_gz(MODEL))
    # Then the new archive holds both, the code under code/, byte for byte
    assert files_of(archive) == MODEL | {f"code/{name}": data for name, data in SOURCE.items()}
    assert summary == RepackedModel(
        model_files=2,
        code_files=3,
        unpacked_bytes=sum(map(len, [*MODEL.values(), *SOURCE.values()])),
        replaced_code=0,
    )


def test_the_models_own_code_dir_is_replaced_by_the_runs() -> None:
    # Given a model whose script copied an older inference.py into the model directory
    model = tar_gz({**MODEL, "code/inference.py": b"stale", "code/old_helper.py": b"stale"})
    # When it is repacked, then only the run's code is under code/ (the SDK replaces the directory too)
    archive, summary = repacked(model)
    assert {name for name in files_of(archive) if name.startswith("code/")} == {f"code/{n}" for n in SOURCE}
    assert files_of(archive)["code/inference.py"] == SOURCE["inference.py"]
    assert summary.replaced_code == 2


def test_dot_slash_names_are_normalised_and_the_root_entry_dropped() -> None:
    # Given an archive made with `tar -czf model.tar.gz -C model .`
    model = tar_gz([("dir", ".", ""), ("dir", "./extra", ""), ("file", "./model.joblib", b"m")])
    archive, _ = repacked(model)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        names = tar.getnames()
    assert names[:3] == ["extra", "model.joblib", "code"]


def test_the_same_inputs_give_the_same_bytes() -> None:
    # A retried RegisterModel rewrites the object it may already have written: it must not change it
    first, _ = repacked(tar_gz(MODEL))
    second, _ = repacked(tar_gz(MODEL))
    assert first == second
    assert first[4:8] == b"\0\0\0\0"  # the gzip header's MTIME


def test_members_carry_no_owner_and_plain_modes() -> None:
    archive, _ = repacked(tar_gz(MODEL))
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = tar.getmembers()
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
    assert {m.mode for m in members if m.isfile()} == {0o644}


def test_the_archive_extracts_safely_where_the_local_sagemaker_serves_it(tmp_path: Path) -> None:
    archive, _ = repacked(tar_gz(MODEL))
    (tmp_path / "model.tar.gz").write_bytes(archive)
    extract_tar_safely(tmp_path / "model.tar.gz", tmp_path / "model")
    assert (tmp_path / "model" / "code" / "inference.py").read_bytes() == SOURCE["inference.py"]
    assert (tmp_path / "model" / "model.joblib").read_bytes() == MODEL["model.joblib"]


# ---------------------------------------------------------------- what is refused


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        pytest.param([("file", "../escaped.txt", b"x")], "absolute or has a '..' component", id="dot-dot"),
        pytest.param([("file", "/etc/cron.d/x", b"x")], "absolute or has a '..' component", id="absolute"),
        pytest.param([("file", "a/../../escaped.txt", b"x")], "absolute or has a '..' component", id="dot-dot-inside"),
        pytest.param([("file", "a/../b.txt", b"x")], "absolute or has a '..' component", id="any-dot-dot"),
        pytest.param([("symlink", "link", "/etc/passwd")], "is a link", id="symlink-out"),
        pytest.param([("symlink", "link", "model.joblib")], "is a link", id="symlink-in"),
        pytest.param([("file", "a", b"x"), ("hardlink", "b", "a")], "is a link", id="hardlink"),
        pytest.param([("fifo", "pipe", "")], "special file", id="fifo"),
        pytest.param([("device", "tty", "")], "special file", id="device"),
        pytest.param([("file", "a", b"x"), ("file", "./a", b"y")], "appears twice", id="duplicate"),
    ],
)
def test_an_unsafe_model_archive_is_refused_naming_the_member(members: list[Member], reason: str) -> None:
    model = tar_gz([("file", "model.joblib", b"m"), *members])
    with pytest.raises(InvalidInput, match=rf"s3://b/model\.tar\.gz: member .*{reason}"):
        repack(
            io.BytesIO(model),
            io.BytesIO(tar_gz(SOURCE)),
            io.BytesIO(),
            program="inference.py",
            model_uri="s3://b/model.tar.gz",
        )


@pytest.mark.parametrize(
    "members",
    [
        pytest.param([("file", "../../model.joblib", b"x")], id="dot-dot"),
        pytest.param([("symlink", "inference.py", "/etc/passwd")], id="symlink"),
    ],
)
def test_an_unsafe_source_archive_is_refused(members: list[Member]) -> None:
    with pytest.raises(InvalidInput, match=r"s3://b/sourcedir\.tar\.gz: member"):
        repack(
            io.BytesIO(tar_gz(MODEL)),
            io.BytesIO(tar_gz(members)),
            io.BytesIO(),
            program="inference.py",
            source_uri="s3://b/sourcedir.tar.gz",
        )


def test_a_model_past_the_size_limit_is_refused_with_the_limit() -> None:
    # Given a limit of 2 MB and a model file of 3 MB
    model = tar_gz({"model.joblib": b"\0" * (3 * 2**20)})
    with pytest.raises(InvalidInput, match=r"unpack to more than 2 MB"):
        repacked(model, limit=2 * 2**20)


def test_the_code_counts_against_the_size_limit_too() -> None:
    source = tar_gz({"inference.py": b"x" * 2**20, "big.bin": b"y" * 2**20})
    with pytest.raises(InvalidInput, match=r"sourcedir\.tar\.gz: the model and its code unpack to more than 2 MB"):
        repacked(tar_gz({"model.joblib": b"m" * 2**19}), source, limit=2 * 2**20)


def test_a_source_without_the_inference_entry_point_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"holds no serve\.py, the inference entry point"):
        repacked(tar_gz(MODEL), program="serve.py")


@pytest.mark.parametrize("broken", [b"not a tar at all", tar_gz(MODEL)[:40]], ids=["garbage", "truncated"])
def test_an_unreadable_model_archive_is_invalid_input(broken: bytes) -> None:
    with pytest.raises(InvalidInput, match=r"model\.tar\.gz is not a readable tar archive"):
        repacked(broken)


# ---------------------------------------------------------------- names and places


@pytest.mark.parametrize(("name", "expected"), [(".", None), ("./", None), ("./a/b", "a/b"), ("a//b/./c", "a/b/c")])
def test_member_path_normalises_names(name: str, expected: str | None) -> None:
    found = member_path(name)
    assert (found.as_posix() if found is not None else None) == expected


def test_the_repacked_archive_lies_beside_the_runs_source() -> None:
    source = "s3://shepherd-data-123456789012/artifacts/churn/run-1/sourcedir.tar.gz"
    assert hosting_archive_uri(source) == "s3://shepherd-data-123456789012/artifacts/churn/run-1/model.tar.gz"


@pytest.mark.parametrize(
    "uri", ["s3://b/sourcedir.tar.gz", "s3://b/artifacts/m/r/code.tar.gz", "/tmp/sourcedir.tar.gz"]
)
def test_a_source_uri_that_is_not_a_runs_is_refused(uri: str) -> None:
    with pytest.raises(InvalidInput, match="is not a run's"):
        hosting_archive_uri(uri)
