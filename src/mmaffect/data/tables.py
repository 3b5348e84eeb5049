"""Parsing and validation of the small text tables that corpora ship.

Two dialects are read:

* **SEWA / AVEC 2017** (``;``-separated, no header): label files
  ``name;time;arousal;valence;liking``, turn files ``start;end`` and
  transcription files ``start;end;'text'`` (text in single quotes; it may
  contain ``;``).
* **Generic layout** (comma-separated, standard CSV quoting, with a header):
  ``labels.csv`` (``time,arousal,valence[,more]``), ``turns.csv``
  (``start,end``), ``transcript.csv`` (``start,end,text``) and
  ``splits.csv`` (``session,partition``).

Every problem raises :class:`mmaffect.errors.DataError` naming the file and
the 1-based line number of the offending row. Blank lines are skipped (but
still counted, so row numbers match what a text editor shows).

Label rules (both dialects): at least one row; times non-negative, strictly
increasing (an equal time is reported as a duplicate, a smaller one as out of
order); every value a finite decimal number (``nan``, ``inf`` and decimal
commas are rejected); a constant rate. SEWA labels must already be 10 Hz and
are returned on the regular grid ``t0 + i/10``. Generic labels of any constant
rate are brought to the 10 Hz grid by :func:`resample_labels`.

Turn rules: times non-negative, ``end >= start``; overlapping turns are
allowed; turns are returned sorted by ``(start, end)``. An empty turn or
transcript file means "no turns" and gives ``[]``.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmaffect.data.session import LABEL_RATE, Labels, Turn
from mmaffect.errors import DataError

SEWA_LABEL_NAMES: tuple[str, ...] = ("arousal", "valence", "liking")
"""The rating columns of a SEWA label file, in file order."""

PARTITIONS: tuple[str, ...] = ("train", "devel", "test")
"""The partition names mmaffect knows."""

GRID_TOLERANCE = 1e-3
"""Seconds a 10 Hz label time may deviate from its grid point ``t0 + i/10``."""

RATE_TOLERANCE = 0.1
"""Fraction of the median step by which a generic label file's step between rows may vary."""

# ASCII digits only: Python's float() also reads other scripts' digits ('١' is 1.0), which no spreadsheet
# or annotation tool writes as a number; such a value is an error, not a silent conversion.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_ON_GRID = 1e-6  # seconds: a time this close to a grid point is on the grid


# --------------------------------------------------------------------------- #
# low-level helpers


def _read_text(path: Path, encoding: str) -> str:
    """The file's text (a leading UTF-8 byte-order mark removed)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except OSError as exc:
        raise DataError(f"cannot read file: {exc.strerror or exc}", path=path) from None
    if encoding.replace("-", "").replace("_", "").lower() == "utf8":
        encoding = "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"bytes that are not valid {encoding} text (convert the file to UTF-8, "
            f"e.g. iconv -f latin1 -t utf-8)",
            path=path,
            row=line,
        ) from None
    except LookupError:
        raise DataError(f"unknown text encoding {encoding!r}", path=path) from None


def _lines(path: Path, encoding: str) -> list[tuple[int, str]]:
    """Non-blank lines of a file as ``(line_number, line)`` (1-based, ``\\r`` removed)."""
    text = _read_text(path, encoding)
    out = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            out.append((number, line))
    return out


def parse_number(text: str, *, path: Path, row: int, column: str) -> float:
    """A finite decimal number, or a :class:`DataError` naming file, row and column.

    >>> parse_number(" 0.25 ", path=Path("x.csv"), row=2, column="time")
    0.25
    >>> parse_number("nan", path=Path("x.csv"), row=2, column="arousal")
    Traceback (most recent call last):
    ...
    mmaffect.errors.DataError: x.csv: row 2: arousal: 'nan' is not a finite decimal number
    """
    stripped = text.strip()
    if not _NUMBER.fullmatch(stripped):
        hint = " (only the ASCII digits 0-9 are read as digits)" if any(
            c.isdigit() and not c.isascii() for c in stripped) else ""
        raise DataError(f"{column}: {text!r} is not a finite decimal number{hint}", path=path, row=row)
    value = float(stripped)
    if not math.isfinite(value):
        raise DataError(f"{column}: {text!r} is not a finite decimal number", path=path, row=row)
    return value


def _unquote(text: str) -> str:
    """``'x'`` or ``"x"`` -> ``x``; anything else unchanged."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _csv_rows(path: Path) -> tuple[tuple[int, list[str]] | None, list[tuple[int, list[str]]]]:
    """Header and data rows of a comma-separated file with standard quoting.

    Returns ``(header, rows)``: each as ``(line_number, fields)`` where the line
    number is that of the record's first line; ``header`` is ``None`` for a
    file without any non-blank record. Bad quoting raises a DataError.
    """
    text = _read_text(path, "utf-8")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(f"cannot parse CSV quoting: {exc}", path=path, row=start) from None
        if not fields or all(not f.strip() for f in fields):
            continue
        records.append((start, fields))
    if not records:
        return None, []
    return records[0], records[1:]


def _check_header(
    header: tuple[int, list[str]] | None,
    expected: Sequence[str],
    *,
    path: Path,
) -> None:
    """Require the header row to be exactly ``expected`` (case and spaces ignored)."""
    if header is None:
        return
    line, fields = header
    names = [f.strip().lower() for f in fields]
    if names != list(expected):
        raise DataError(
            f"header must be {','.join(expected)!r}, found {','.join(fields)!r}",
            path=path,
            row=line,
        )


# --------------------------------------------------------------------------- #
# labels


def check_label_times(times: Sequence[float], rows: Sequence[int], *, path: Path) -> None:
    """Times must be non-negative and strictly increasing; name the first bad row.

    ``rows[i]`` is the line number of ``times[i]``.
    """
    seen: dict[float, int] = {}
    previous = -math.inf
    for t, row in zip(times, rows):
        if t < 0:
            raise DataError(f"time {t:g} s is negative", path=path, row=row)
        if t == previous or t in seen:
            raise DataError(
                f"duplicated time {t:g} s (also on row {seen[t]})", path=path, row=row
            )
        if t < previous:
            raise DataError(
                f"time {t:g} s is out of order (comes after {previous:g} s)", path=path, row=row
            )
        seen[t] = row
        previous = t


def _check_rate(
    times: np.ndarray,
    rows: Sequence[int],
    *,
    path: Path,
    step: float,
    tolerance: float,
    grid: bool,
) -> None:
    """Each step ``t[i] - t[i-1]`` must be within ``tolerance`` of ``step``.

    With ``grid``, each time must also lie within ``tolerance`` of
    ``t0 + i*step`` (no slow drift). The first offending row is named.
    """
    if len(times) < 2:
        return
    t0 = times[0]
    for i in range(1, len(times)):
        expected = times[i - 1] + step
        bad = abs(times[i] - expected) > tolerance
        if grid and not bad and abs(times[i] - (t0 + i * step)) > tolerance:
            bad, expected = True, t0 + i * step
        if bad:
            raise DataError(
                f"irregular label rate: time {times[i]:g} s where {expected:g} s was expected "
                f"(constant step of {step:g} s, {1.0 / step:g} Hz; missing or extra rows?)",
                path=path,
                row=rows[i],
            )


def _grid_index(t: float, rate: float) -> int | None:
    """``k`` when ``t`` is (within 1 µs) the grid point ``k / rate``, else None."""
    k = round(t * rate)
    return k if abs(t - k / rate) <= _ON_GRID else None


def read_sewa_labels(path: Path, *, name: str | None = None, encoding: str = "utf-8") -> Labels:
    """Read a SEWA label file ``name;time;arousal;valence;liking`` (no header).

    ``name`` (the recording id), when given, must equal the first column of
    every row (quotes ``'..'`` or ``".."`` removed). Rows must be 10 Hz: each
    time within :data:`GRID_TOLERANCE` of ``t0 + i/10``; the returned times are
    exactly that grid (``k/10`` when ``t0`` is a multiple of 0.1 s).
    """
    path = Path(path)
    lines = _lines(path, encoding)
    if not lines:
        raise DataError("label file is empty", path=path)
    times: list[float] = []
    values: list[list[float]] = []
    rows: list[int] = []
    first_name: str | None = None
    for row, line in lines:
        fields = line.split(";")
        if len(fields) != 5:
            raise DataError(
                f"expected 5 ';'-separated fields name;time;arousal;valence;liking, "
                f"found {len(fields)}",
                path=path,
                row=row,
            )
        rec = _unquote(fields[0])
        if name is not None and rec != name:
            raise DataError(
                f"row belongs to recording {rec!r}, not {name!r}", path=path, row=row
            )
        if first_name is None:
            first_name = rec
        elif rec != first_name:
            raise DataError(
                f"row belongs to recording {rec!r}, earlier rows to {first_name!r}",
                path=path,
                row=row,
            )
        times.append(parse_number(fields[1], path=path, row=row, column="time"))
        values.append(
            [
                parse_number(f, path=path, row=row, column=col)
                for f, col in zip(fields[2:], SEWA_LABEL_NAMES)
            ]
        )
        rows.append(row)
    check_label_times(times, rows, path=path)
    t = np.asarray(times, dtype=np.float64)
    _check_rate(
        t, rows, path=path, step=1.0 / LABEL_RATE, tolerance=GRID_TOLERANCE, grid=True
    )
    k0 = _grid_index(times[0], LABEL_RATE)
    n = len(times)
    grid = (
        (k0 + np.arange(n, dtype=np.float64)) / LABEL_RATE
        if k0 is not None
        else times[0] + np.arange(n, dtype=np.float64) / LABEL_RATE
    )
    return Labels(
        times=grid,
        values=np.asarray(values, dtype=np.float64).astype(np.float32),
        names=SEWA_LABEL_NAMES,
        source=path,
    )


def resample_labels(
    times: np.ndarray, values: np.ndarray, *, rate: float = LABEL_RATE
) -> tuple[np.ndarray, np.ndarray]:
    """Bring a label table of any rate onto the regular ``rate`` grid.

    The grid runs from the first time rounded *up* to a multiple of
    ``1/rate`` to the last time rounded *down* (a time within 1 µs of a grid
    point counts as on it); the grid times are exactly ``k / rate``. Each
    column is linearly interpolated between the two neighbouring rows (in
    float64, returned as float32), so every value stays between its
    neighbours and a linear ramp stays exactly linear. A table already on the
    grid is returned unchanged (no interpolation). ``times`` must be strictly
    increasing; ``values`` is ``(N, K)``.

    >>> t, v = resample_labels(np.array([0.0, 0.2]), np.array([[0.0], [1.0]]))
    >>> t.tolist(), v[:, 0].tolist()
    ([0.0, 0.1, 0.2], [0.0, 0.5, 1.0])
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or len(values) != len(times) or len(times) == 0:
        raise ValueError(f"values of shape {values.shape} do not match {len(times)} times")
    k0 = math.ceil(times[0] * rate - _ON_GRID * rate)
    k1 = math.floor(times[-1] * rate + _ON_GRID * rate)
    if k1 < k0:
        return np.empty(0, dtype=np.float64), np.empty((0, values.shape[1]), dtype=np.float32)
    grid = np.arange(k0, k1 + 1, dtype=np.float64) / rate
    if len(grid) == len(times) and np.all(np.abs(grid - times) <= _ON_GRID):
        return grid, values.astype(np.float32)
    out = np.empty((len(grid), values.shape[1]), dtype=np.float64)
    for k in range(values.shape[1]):
        out[:, k] = np.interp(grid, times, values[:, k])
    return grid, out.astype(np.float32)


def read_labels_csv(path: Path) -> Labels:
    """Read a generic ``labels.csv``: header ``time,arousal,valence[,more]``.

    Column names are case-insensitive; ``time``, ``arousal`` and ``valence``
    are required, any further columns are more rating dimensions (numeric).
    The returned names are ``arousal, valence`` followed by the other columns
    in file order. The rows must have a constant rate (each time within 10 %
    of a step of ``t0 + i*step``, ``step`` the mean step); any rate other than
    the 10 Hz grid is resampled with :func:`resample_labels`. A single row is
    allowed when it lies on the 0.1 s grid.
    """
    path = Path(path)
    header, records = _csv_rows(path)
    if header is None:
        raise DataError("label file is empty", path=path)
    line, fields = header
    names = [f.strip().lower() for f in fields]
    for required in ("time", "arousal", "valence"):
        if required not in names:
            raise DataError(
                f"header must hold the columns time,arousal,valence[,more]; "
                f"{required!r} is missing in {','.join(fields)!r}",
                path=path,
                row=line,
            )
    for i, n in enumerate(names):
        if not n:
            raise DataError(f"header column {i + 1} has no name", path=path, row=line)
        if names.index(n) != i:
            raise DataError(f"header column {n!r} appears twice", path=path, row=line)
    if not records:
        raise DataError("label file has a header but no rows", path=path)
    dims = ["arousal", "valence"] + [n for n in names if n not in ("time", "arousal", "valence")]
    order = [names.index(d) for d in dims]
    t_col = names.index("time")
    times: list[float] = []
    values: list[list[float]] = []
    rows: list[int] = []
    for row, rec in records:
        if len(rec) != len(names):
            raise DataError(
                f"expected {len(names)} comma-separated fields ({','.join(names)}), "
                f"found {len(rec)}",
                path=path,
                row=row,
            )
        times.append(parse_number(rec[t_col], path=path, row=row, column="time"))
        values.append([parse_number(rec[j], path=path, row=row, column=names[j]) for j in order])
        rows.append(row)
    check_label_times(times, rows, path=path)
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if len(t) >= 2:
        step = float(np.median(np.diff(t)))
        _check_rate(t, rows, path=path, step=step, tolerance=RATE_TOLERANCE * step, grid=False)
    grid, out = resample_labels(t, v, rate=LABEL_RATE)
    if len(grid) == 0:
        raise DataError(
            f"labels from {t[0]:g} s to {t[-1]:g} s contain no point of the "
            f"{1 / LABEL_RATE:g} s grid",
            path=path,
            row=rows[0],
        )
    return Labels(times=grid, values=out, names=tuple(dims), source=path)


# --------------------------------------------------------------------------- #
# turns and transcripts


def _make_turn(start: float, end: float, text: str, *, path: Path, row: int) -> Turn:
    if start < 0:
        raise DataError(f"start {start:g} s is negative", path=path, row=row)
    if end < start:
        raise DataError(f"end {end:g} s is before start {start:g} s", path=path, row=row)
    return Turn(start=start, end=end, text=text)


def _sorted_turns(turns: list[Turn]) -> list[Turn]:
    return sorted(turns, key=lambda u: (u.start, u.end))


def read_sewa_turns(path: Path, *, encoding: str = "utf-8") -> list[Turn]:
    """Read a SEWA turn file ``start;end`` (seconds, no header); sorted, may overlap."""
    path = Path(path)
    turns = []
    for row, line in _lines(path, encoding):
        fields = line.split(";")
        if len(fields) != 2:
            raise DataError(
                f"expected 2 ';'-separated fields start;end, found {len(fields)}",
                path=path,
                row=row,
            )
        start = parse_number(fields[0], path=path, row=row, column="start")
        end = parse_number(fields[1], path=path, row=row, column="end")
        turns.append(_make_turn(start, end, "", path=path, row=row))
    return _sorted_turns(turns)


def read_sewa_transcript(path: Path, *, encoding: str = "utf-8") -> list[Turn]:
    """Read a SEWA transcription file ``start;end;'text'`` (no header).

    The text is everything after the second ``;``, which must be wrapped in
    single quotes; what lies between the outer quotes is kept verbatim
    (``;``, apostrophes and tags such as ``<laughter>`` included).
    """
    path = Path(path)
    turns = []
    for row, line in _lines(path, encoding):
        fields = line.split(";", 2)
        if len(fields) != 3:
            raise DataError(
                f"expected 3 ';'-separated fields start;end;'text', found {len(fields)}",
                path=path,
                row=row,
            )
        start = parse_number(fields[0], path=path, row=row, column="start")
        end = parse_number(fields[1], path=path, row=row, column="end")
        quoted = fields[2].strip()
        if len(quoted) < 2 or quoted[0] != "'" or quoted[-1] != "'":
            raise DataError(
                f"text must be wrapped in single quotes, found {fields[2]!r}", path=path, row=row
            )
        turns.append(_make_turn(start, end, quoted[1:-1], path=path, row=row))
    return _sorted_turns(turns)


def read_turns_csv(path: Path) -> list[Turn]:
    """Read a generic ``turns.csv`` (header ``start,end``, seconds); sorted, may overlap.

    An empty file, or one with only the header, means no turns.
    """
    path = Path(path)
    header, records = _csv_rows(path)
    _check_header(header, ("start", "end"), path=path)
    turns = []
    for row, rec in records:
        if len(rec) != 2:
            raise DataError(
                f"expected 2 comma-separated fields start,end, found {len(rec)}", path=path, row=row
            )
        start = parse_number(rec[0], path=path, row=row, column="start")
        end = parse_number(rec[1], path=path, row=row, column="end")
        turns.append(_make_turn(start, end, "", path=path, row=row))
    return _sorted_turns(turns)


def read_transcript_csv(path: Path) -> list[Turn]:
    """Read a generic ``transcript.csv`` (header ``start,end,text``, standard CSV quoting).

    Text containing commas, quotes or line breaks must be quoted the CSV way
    (wrapped in double quotes, a double quote inside written twice); it is
    returned verbatim. An empty file, or one with only
    the header, is a transcript without words (``[]``).
    """
    path = Path(path)
    header, records = _csv_rows(path)
    _check_header(header, ("start", "end", "text"), path=path)
    turns = []
    for row, rec in records:
        if len(rec) != 3:
            raise DataError(
                f"expected 3 comma-separated fields start,end,text, found {len(rec)} "
                f"(quote text that contains commas)",
                path=path,
                row=row,
            )
        start = parse_number(rec[0], path=path, row=row, column="start")
        end = parse_number(rec[1], path=path, row=row, column="end")
        turns.append(_make_turn(start, end, rec[2], path=path, row=row))
    return _sorted_turns(turns)


def read_splits_csv(path: Path) -> dict[str, tuple[str, int]]:
    """Read a generic ``splits.csv`` (header ``session,partition``).

    Returns ``{session: (partition, line_number)}``. Partition names are
    lower-cased words (letters, digits, ``_``, ``-``, ``.``): ``train``,
    ``devel`` and ``test`` are what training uses by default, other names
    (e.g. ``spk03`` for leave-one-speaker-out folds) are allowed. A session
    listed twice is an error.
    """
    path = Path(path)
    header, records = _csv_rows(path)
    if header is None:
        raise DataError("splits file is empty", path=path)
    _check_header(header, ("session", "partition"), path=path)
    out: dict[str, tuple[str, int]] = {}
    for row, rec in records:
        if len(rec) != 2:
            raise DataError(
                f"expected 2 comma-separated fields session,partition, found {len(rec)}",
                path=path,
                row=row,
            )
        session, partition = rec[0].strip(), rec[1].strip().lower()
        if not session:
            raise DataError("empty session name", path=path, row=row)
        if not re.fullmatch(r"[\w.-]+", partition):
            raise DataError(
                f"invalid partition name {rec[1].strip()!r} (letters, digits, '_', '-', '.'; "
                f"usually one of {', '.join(PARTITIONS)})",
                path=path,
                row=row,
            )
        if session in out:
            raise DataError(
                f"session {session!r} is listed twice (also on row {out[session][1]})",
                path=path,
                row=row,
            )
        out[session] = (partition, row)
    return out
