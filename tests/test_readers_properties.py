"""Property tests of the table readers: round trips, resampling, row numbers of errors."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmaffect.data.tables import (
    read_labels_csv,
    read_sewa_labels,
    read_sewa_transcript,
    read_sewa_turns,
    read_transcript_csv,
    read_turns_csv,
    resample_labels,
)
from mmaffect.errors import DataError

SETTINGS = settings(max_examples=30, deadline=None)

values32 = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)
seconds = st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder per module (hypothesis reruns a test; function fixtures do not reset)."""
    return tmp_path_factory.mktemp("tables")


def write_file(scratch: Path, content: str, name: str) -> Path:
    """Write ``content`` to a fresh sub-folder of ``scratch`` as ``name``."""
    path = Path(tempfile.mkdtemp(dir=scratch)) / name
    path.write_text(content, encoding="utf-8")
    return path


def csv_text(rows: list[list[object]]) -> str:
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


@st.composite
def label_tables(draw: st.DrawFn, *, min_cols: int, max_cols: int, max_rows: int = 40) -> tuple:
    n = draw(st.integers(1, max_rows))
    k0 = draw(st.integers(0, 5000))
    cols = draw(st.integers(min_cols, max_cols))
    values = np.array(
        draw(st.lists(st.lists(values32, min_size=cols, max_size=cols), min_size=n, max_size=n)),
        dtype=np.float32,
    )
    return k0, values


@SETTINGS
@given(table=label_tables(min_cols=3, max_cols=3), quote=st.sampled_from(["", "'", '"']))
def test_sewa_labels_round_trip(scratch: Path, table: tuple, quote: str) -> None:
    k0, values = table
    lines = [
        f"{quote}Train_07{quote};{(k0 + i) / 10!r};" + ";".join(repr(float(v)) for v in row)
        for i, row in enumerate(values)
    ]
    path = write_file(scratch, "\n".join(lines), "Train_07.csv")
    labels = read_sewa_labels(path, name="Train_07")
    assert labels.times.tolist() == [(k0 + i) / 10 for i in range(len(values))]
    np.testing.assert_array_equal(labels.values, values)
    assert labels.names == ("arousal", "valence", "liking")


@SETTINGS
@given(table=label_tables(min_cols=2, max_cols=5), spaces=st.booleans())
def test_generic_10hz_labels_round_trip(scratch: Path, table: tuple, spaces: bool) -> None:
    k0, values = table
    extra = [f"dim{j}" for j in range(values.shape[1] - 2)]
    header = ["time", "arousal", "valence", *extra]
    pad = " " if spaces else ""
    rows = [header] + [
        [f"{pad}{(k0 + i) / 10!r}", *(f"{float(v)!r}{pad}" for v in row)]
        for i, row in enumerate(values)
    ]
    labels = read_labels_csv(write_file(scratch, csv_text(rows), "labels.csv"))
    assert labels.names == ("arousal", "valence", *extra)
    assert labels.times.tolist() == [(k0 + i) / 10 for i in range(len(values))]
    np.testing.assert_array_equal(labels.values, values)


turn_lists = st.lists(
    st.tuples(seconds, seconds).map(lambda p: (min(p), max(p))), min_size=0, max_size=25
)
sewa_text = st.text(
    alphabet=st.one_of(
        st.characters(blacklist_categories=("Cs", "Cc")), st.sampled_from(list(";'<> \t"))
    ),
    max_size=30,
)
csv_free_text = st.text(
    alphabet=st.one_of(
        st.characters(blacklist_categories=("Cs", "Cc")), st.sampled_from(list(',";\n\t '))
    ),
    max_size=30,
)


@SETTINGS
@given(turns=turn_lists)
def test_turn_tables_round_trip_sorted(scratch: Path, turns: list[tuple[float, float]]) -> None:
    expected = sorted(turns)
    sewa_content = "".join(f"{s!r};{e!r}\n" for s, e in turns)
    sewa = read_sewa_turns(write_file(scratch, sewa_content, "t.csv"))
    generic_text = csv_text([["start", "end"], *turns])
    generic = read_turns_csv(write_file(scratch, generic_text, "turns.csv"))
    assert [(u.start, u.end) for u in sewa] == expected
    assert [(u.start, u.end) for u in generic] == expected
    assert all(u.text == "" for u in sewa + generic)


@SETTINGS
@given(
    turns=turn_lists,
    texts=st.lists(sewa_text, min_size=25, max_size=25),
    csv_texts=st.lists(csv_free_text, min_size=25, max_size=25),
)
def test_transcripts_round_trip_verbatim(
    scratch: Path,
    turns: list[tuple[float, float]],
    texts: list[str],
    csv_texts: list[str],
) -> None:
    sewa_rows = [(s, e, t) for (s, e), t in zip(turns, texts)]
    content = "".join(f"{s!r};{e!r};'{t}'\n" for s, e, t in sewa_rows)
    got = read_sewa_transcript(write_file(scratch, content, "Test_01.csv"))
    key = lambda r: (r[0], r[1])  # noqa: E731 - stable sort by times only
    assert [(u.start, u.end, u.text) for u in got] == sorted(sewa_rows, key=key)
    csv_rows = [(s, e, t) for (s, e), t in zip(turns, csv_texts)]
    content = csv_text([["start", "end", "text"], *csv_rows])
    got = read_transcript_csv(write_file(scratch, content, "x.csv"))
    assert [(u.start, u.end, u.text) for u in got] == sorted(csv_rows, key=key)


@SETTINGS
@given(
    rate=st.sampled_from([1.0, 4.0, 5.0, 7.5, 25.0, 30.0, 50.0]),
    t0=st.floats(0.0, 20.0),
    n=st.integers(2, 120),
    slope=st.floats(-2.0, 2.0),
    offset=st.floats(-1.0, 1.0),
)
def test_resampling_keeps_linear_ramps_and_range(
    rate: float, t0: float, n: int, slope: float, offset: float
) -> None:
    times = t0 + np.arange(n) / rate
    values = np.stack([offset + slope * times, np.sin(times)], axis=1)
    grid, out = resample_labels(times, values)
    if len(grid) == 0:
        assert np.floor(times[-1] * 10 + 1e-5) < np.ceil(times[0] * 10 - 1e-5)
        return
    # the grid: multiples of 0.1 s from the first time rounded up to the last rounded down
    k = np.round(grid * 10)
    assert np.array_equal(grid, k / 10)
    assert np.all(np.diff(k) == 1)
    assert grid[0] >= times[0] - 1e-6 and grid[0] - times[0] < 0.1
    assert grid[-1] <= times[-1] + 1e-6 and times[-1] - grid[-1] < 0.1
    assert out.dtype == np.float32 and out.shape == (len(grid), 2)
    np.testing.assert_allclose(out[:, 0], offset + slope * grid, atol=1e-5)
    # every value between its neighbouring samples (linear interpolation)
    idx = np.clip(np.searchsorted(times, grid), 1, n - 1)
    lo = np.minimum(values[idx - 1, 1], values[idx, 1]).astype(np.float32)
    hi = np.maximum(values[idx - 1, 1], values[idx, 1]).astype(np.float32)
    assert np.all(out[:, 1] >= lo) and np.all(out[:, 1] <= hi)


@SETTINGS
@given(
    rate=st.sampled_from([5.0, 25.0]),
    n=st.integers(3, 60),
    slope=st.floats(-1.0, 1.0),
)
def test_generic_labels_file_resampled(scratch: Path, rate: float, n: int, slope: float) -> None:
    times = [i / rate for i in range(n)]
    rows = [["time", "arousal", "valence"]] + [[f"{t:.6f}", slope * t, 0.5] for t in times]
    labels = read_labels_csv(write_file(scratch, csv_text(rows), "labels.csv"))
    expected = np.arange(int(np.floor(times[-1] * 10 + 1e-6)) + 1) / 10
    np.testing.assert_array_equal(labels.times, expected)
    np.testing.assert_allclose(labels.dimension("arousal"), slope * expected, atol=1e-5)
    assert np.all(labels.dimension("valence") == np.float32(0.5))


def first_bad_row(times: list[float]) -> int:
    """0-based index of the first time not larger than the one before."""
    return next(i for i in range(1, len(times)) if times[i] <= times[i - 1])


@st.composite
def broken_orders(draw: st.DrawFn) -> list[int]:
    """Grid indices of a table that is shuffled or has a duplicated row."""
    n = draw(st.integers(2, 30))
    order = list(range(n))
    if draw(st.booleans()):
        shuffled = draw(st.permutations(order))
        if shuffled == order:
            shuffled = order[::-1]
        return shuffled
    i = draw(st.integers(0, n - 1))
    j = draw(st.integers(i, n))
    return order[:j] + [order[i]] + order[j:]


@SETTINGS
@given(order=broken_orders(), blanks=st.lists(st.integers(0, 40), max_size=3))
def test_disordered_labels_rejected_at_the_right_row(
    scratch: Path, order: list[int], blanks: list[int]
) -> None:
    times = [k / 10 for k in order]
    bad = first_bad_row(times)
    # blank lines are skipped but counted in the row numbers
    blank_before = set(blanks)
    sewa_lines: list[str] = []
    generic_lines: list[str] = []
    line_of: list[int] = []  # 1-based line of each data row (without the header)
    for i, t in enumerate(times):
        if i in blank_before:
            sewa_lines.append("")
            generic_lines.append("")
        sewa_lines.append(f"'Devel_01';{t!r};0.1;0.2;0.3")
        generic_lines.append(f"{t!r},0.1,0.2")
        line_of.append(len(sewa_lines))
    sewa_row, generic_row = line_of[bad], line_of[bad] + 1
    kind = "duplicated" if times[bad] in times[:bad] else "out of order"
    with pytest.raises(DataError, match=kind) as exc:
        read_sewa_labels(write_file(scratch, "\n".join(sewa_lines) + "\n", "Devel_01.csv"))
    assert exc.value.row == sewa_row and f"row {sewa_row}:" in str(exc.value)
    assert "Devel_01.csv" in str(exc.value)
    content = "time,arousal,valence\n" + "\n".join(generic_lines) + "\n"
    with pytest.raises(DataError, match=kind) as exc:
        read_labels_csv(write_file(scratch, content, "labels.csv"))
    assert exc.value.row == generic_row and "labels.csv" in str(exc.value)


@SETTINGS
@given(n=st.integers(5, 60), data=st.data())
def test_missing_label_row_rejected(scratch: Path, n: int, data: st.DataObject) -> None:
    gap = data.draw(st.integers(1, n - 2))
    times = [i / 10 for i in range(n) if i != gap]
    sewa = "".join(f"Train_01;{t!r};0;0;0\n" for t in times)
    with pytest.raises(DataError, match="irregular") as exc:
        read_sewa_labels(write_file(scratch, sewa, "Train_01.csv"))
    assert exc.value.row == gap + 1
    generic = "time,arousal,valence\n" + "".join(f"{t!r},0,0\n" for t in times)
    with pytest.raises(DataError, match="irregular") as exc:
        read_labels_csv(write_file(scratch, generic, "labels.csv"))
    assert exc.value.row == gap + 2
