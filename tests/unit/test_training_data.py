"""Training CSVs checked before a job starts (shepherd.training_data): real CSV bytes, streamed in small chunks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from shepherd import training_data
from shepherd.errors import InvalidInput
from shepherd.objects import DataObject
from shepherd.training_data import TrainingDataError, check_dataset

BUCKET = "shepherd-data"
PREFIX = "training/churn/2026-11-25/"
HEADER = b"tenure,charges,calls,contract,fiber,senior,auto_pay,region,target\n"
ROW = b"12,70.5,1,monthly,1,0,1,north,0\n"


@dataclass
class Files:
    """DataFiles over in-memory objects, served in 7-byte chunks (lines and UTF-8 characters split across them)."""

    data: dict[str, bytes]
    served: dict[str, int] = field(default_factory=dict)  # bytes handed out per key

    def read_head(self, bucket: str, key: str, version_id: str | None, limit: int) -> Iterator[bytes]:
        assert (bucket, version_id) == (BUCKET, f"v-{key}")
        head = self.data[key][:limit]
        self.served[key] = len(head)
        yield from (head[i : i + 7] for i in range(0, len(head), 7))

    def objects(self) -> list[DataObject]:
        return [DataObject(key=k, version_id=f"v-{k}", size=len(v)) for k, v in sorted(self.data.items())]


def check(files: dict[str, bytes], target: str | None = "target") -> training_data.DataCheck:
    stored = Files({f"{PREFIX}{name}": data for name, data in files.items()})
    return check_dataset(stored, BUCKET, stored.objects(), target_column=target)


def refusal(files: dict[str, bytes], target: str | None = "target") -> str:
    with pytest.raises(TrainingDataError) as refused:
        check(files, target)
    assert isinstance(refused.value, InvalidInput)  # the lifecycle's Retry never retries it
    return str(refused.value)


def test_good_files_with_one_header_pass_and_are_counted() -> None:
    # Given two CSV files with the same header (one with a BOM, CRLF endings and a trailing blank line)
    files = {
        "part-1.csv": HEADER + ROW * 3,
        "part-2.csv": b"\xef\xbb\xbf" + (HEADER + ROW * 2).replace(b"\n", b"\r\n") + b"\r\n",
        "README.md": b"not data, | not, checked\n",
    }
    # When the dataset is checked, then both CSV files pass, their rows counted, the other file left alone
    found = check(files)
    assert (found.files, found.rows, found.partly_read) == (2, 5, [])
    assert found.columns == HEADER.decode().strip().split(",")


def test_a_ragged_row_is_named_by_file_and_line() -> None:
    # Given a file whose 50th line has two fields too many
    body = HEADER + ROW * 48 + b"12,70.5,1,monthly,1,0,1,north,0,extra,more\n" + ROW
    # When the dataset is checked, then the refusal is one line naming the key and the line
    assert refusal({"part-1.csv": HEADER + ROW, "part-2.csv": body}) == (
        f"{PREFIX}part-2.csv line 50: 11 fields, the header has 9"
    )


def test_a_quoted_line_break_is_one_record_and_later_lines_keep_their_numbers() -> None:
    # Given a quoted field spanning two lines, then a short row
    body = HEADER + b'12,70.5,1,"monthly\nplan",1,0,1,north,0\n' + b"1,2\n"
    # When checked, then the record counts as one and the short row is named by its physical line
    assert refusal({"part-1.csv": body}) == f"{PREFIX}part-1.csv line 4: 2 fields, the header has 9"


def test_a_missing_target_column_is_named_with_the_columns_there_are() -> None:
    message = refusal({"part-1.csv": HEADER.replace(b"target", b"churned") + ROW})
    assert message == (
        f"{PREFIX}part-1.csv line 1: no column 'target' (training.target_column); the header has 'tenure', "
        "'charges', 'calls', 'contract', 'fiber', 'senior', 'auto_pay', 'region' and 1 more"
    )


def test_a_target_needs_a_header_row() -> None:
    message = refusal({"part-1.csv": ROW * 2})
    assert (
        message
        == f"{PREFIX}part-1.csv line 1: no header row naming 'target' (training.target_column): line 1 holds numbers"
    )


def test_without_a_target_files_without_header_pass_when_their_rows_agree() -> None:
    assert check({"a.csv": ROW * 2, "b.csv": ROW}, target=None).rows == 3


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"part-1.csv": HEADER + ROW, "part-2.csv": b""}, f"{PREFIX}part-2.csv: the file is empty (0 bytes)"),
        ({"part-1.csv": HEADER}, f"{PREFIX}part-1.csv line 1: a header and no rows"),
        ({"part-1.csv": b"\n\n  \n"}, f"{PREFIX}part-1.csv: no rows, only blank lines"),
        (
            {"part-1.csv": HEADER + b"1,\xe9t\xe9\n"},
            f"{PREFIX}part-1.csv line 2: not UTF-8 text; save the file as UTF-8",
        ),
        ({"part-1.csv": HEADER + ROW + b"PK\x03\x04\x00"}, f"{PREFIX}part-1.csv line 3: a NUL byte"),
    ],
    ids=["empty", "header-only", "blank", "latin-1", "binary"],
)
def test_a_file_that_holds_no_rows_or_no_text_is_refused(files: dict[str, bytes], message: str) -> None:
    assert refusal(files).startswith(message)


@pytest.mark.parametrize(
    ("second", "problem"),
    [
        (
            HEADER.replace(b",region", b"") + ROW.replace(b",north", b""),
            "the header differs from training/churn/2026-11-25/a/part-1.csv's: no 'region'",
        ),
        (
            HEADER.replace(b"target", b"target,plan") + ROW.replace(b"\n", b",x\n"),
            "the header differs from training/churn/2026-11-25/a/part-1.csv's: extra 'plan'",
        ),
        (
            HEADER.replace(b"tenure,charges", b"charges,tenure") + ROW,
            "the columns are in another order than in training/churn/2026-11-25/a/part-1.csv",
        ),
    ],
    ids=["missing-column", "extra-column", "reordered"],
)
def test_every_file_has_the_first_files_columns(second: bytes, problem: str) -> None:
    # Given a train file and a validation file whose header differs from it
    message = refusal({"a/part-1.csv": HEADER + ROW, "b/part-1.csv": second})
    # Then the second file is named, with what differs
    assert message == f"{PREFIX}b/part-1.csv line 1: {problem}"


def test_files_with_and_without_a_header_do_not_mix() -> None:
    message = refusal({"a.csv": ROW, "b.csv": HEADER + ROW}, target=None)
    assert message == f"{PREFIX}b.csv line 1: a header row, but {PREFIX}a.csv starts with a record"


def test_a_large_file_is_read_only_up_to_its_limit_and_its_cut_row_is_not_judged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a scan limit of 1,000 bytes per file, and a file of 40 rows whose 35th is ragged, past the limit
    monkeypatch.setattr(training_data, "FILE_SCAN_BYTES", 1_000)
    monkeypatch.setattr(training_data, "HEAD_BYTES", 100)
    body = HEADER + ROW * 33 + b"1,2,3\n" + ROW * 5
    stored = Files({f"{PREFIX}part-1.csv": body})
    # When the dataset is checked
    found = check_dataset(stored, BUCKET, stored.objects(), target_column="target")
    # Then only the first 1,000 bytes were served; the row cut at the limit (2 fields) was not judged, nor the whole
    # row before it (a quoted field may go on past the cut); the file is named as read in part
    assert stored.served == {f"{PREFIX}part-1.csv": 1_000}
    assert found.rows == (1_000 - len(HEADER)) // len(ROW) - 1
    assert found.partly_read == [f"{PREFIX}part-1.csv"]


def test_past_the_dataset_limit_each_file_still_gets_its_header_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a dataset limit the first file uses up, and a second file whose header lacks the target
    monkeypatch.setattr(training_data, "TOTAL_SCAN_BYTES", 500)
    monkeypatch.setattr(training_data, "HEAD_BYTES", 200)
    stored = Files({f"{PREFIX}a.csv": HEADER + ROW * 40, f"{PREFIX}b.csv": HEADER.replace(b"target", b"t") + ROW * 40})
    # When the dataset is checked, then the second file is read up to its head only, and refused
    with pytest.raises(TrainingDataError, match=f"^{PREFIX}b.csv line 1: no column 'target'"):
        check_dataset(stored, BUCKET, stored.objects(), target_column="target")
    assert stored.served == {f"{PREFIX}a.csv": 500, f"{PREFIX}b.csv": 200}
