"""HTTP Range parsing: half-open results, 416 for ranges past the end, 400 for anything malformed."""

from __future__ import annotations

import pytest

from resources.ranges import MalformedRange, MultipleRanges, RangeNotSatisfiable, content_range, parse_range

SATISFIABLE = [
    # (header, size, half-open (start, end))
    ("bytes=0-99", 1000, (0, 100)),
    ("bytes=100-", 1000, (100, 1000)),
    ("bytes=-100", 1000, (900, 1000)),
    ("bytes=0-0", 1000, (0, 1)),
    ("bytes=999-999", 1000, (999, 1000)),
    ("bytes=0-", 1000, (0, 1000)),
    ("bytes=999-", 1000, (999, 1000)),
    ("bytes=0-999", 1000, (0, 1000)),
    ("bytes=500-5000", 1000, (500, 1000)),  # end past EOF: clamped
    ("bytes=0-18446744073709551615", 1000, (0, 1000)),
    ("bytes=-1", 1000, (999, 1000)),
    ("bytes=-1000", 1000, (0, 1000)),
    ("bytes=-5000", 1000, (0, 1000)),  # suffix longer than the file: the whole file
    ("bytes=0-0", 1, (0, 1)),
    ("bytes=-1", 1, (0, 1)),
    ("bytes=007-010", 1000, (7, 11)),
    # whitespace and the unit's case are tolerated
    (" bytes=0-99 ", 1000, (0, 100)),
    ("bytes = 0 - 99", 1000, (0, 100)),
    ("bytes=\t10-19\t", 1000, (10, 20)),
    ("bytes= -100", 1000, (900, 1000)),
    ("bytes=100- ", 1000, (100, 1000)),
    ("Bytes=0-9", 1000, (0, 10)),
    ("BYTES=0-9", 1000, (0, 10)),
]


@pytest.mark.parametrize(("header", "size", "expected"), SATISFIABLE)
def test_parse_range_returns_half_open_bounds(header, size, expected):
    assert parse_range(header, size) == expected


NOT_SATISFIABLE = [
    # (header, size)
    ("bytes=1000-", 1000),  # start == size
    ("bytes=1000-1999", 1000),
    ("bytes=1001-", 1000),  # start > size
    ("bytes=5000-6000", 1000),
    ("bytes=1-", 1),
    ("bytes=0-", 0),  # empty file
    ("bytes=0-99", 0),
    ("bytes=0-0", 0),
    ("bytes=-1", 0),
    ("bytes=-100", 0),
]


@pytest.mark.parametrize(("header", "size"), NOT_SATISFIABLE)
def test_parse_range_past_the_end_is_not_satisfiable(header, size):
    with pytest.raises(RangeNotSatisfiable) as raised:
        parse_range(header, size)

    assert raised.value.size == size
    assert f"{size}-byte" in str(raised.value)


MALFORMED = [
    "",
    "   ",
    "0-99",  # missing unit
    "=0-99",
    "bytes 0-99",
    "items=0-1",
    "bytes=",
    "bytes= ",
    "bytes=-",
    "bytes=a-b",
    "bytes=0-b",
    "bytes=a-9",
    "bytes=5",  # no dash
    "bytes=5-2",  # end before start
    "bytes=-0",  # empty suffix
    "bytes=-1-5",  # negative start
    "bytes=0--5",  # negative end
    "bytes=--5",
    "bytes=1-2-3",
    "bytes=+1-2",
    "bytes=1.5-2",
    "bytes=0x10-20",
    "bytes=1 0-20",  # space inside a number
    "bytes=0-1,",  # a multi-range with an empty part
    "bytes=0-1,x-2",
    "bytes=²-3",  # str.isdigit() says yes, int() says no
    "bytes=0-²",
    "bytes=٠-٣",  # Arabic-Indic digits are not HTTP's DIGIT
    "bytes=" + "9" * 4301 + "-",  # int() refuses this many digits with a plain ValueError
    "bytes=0-" + "9" * 21,
]


@pytest.mark.parametrize("size", [0, 1000])
@pytest.mark.parametrize("header", MALFORMED)
def test_parse_range_refuses_malformed_headers(header, size):
    with pytest.raises(MalformedRange):
        parse_range(header, size)


def test_malformed_and_unsatisfiable_are_distinct_errors():
    assert not issubclass(MalformedRange, RangeNotSatisfiable)
    assert not issubclass(RangeNotSatisfiable, MalformedRange)


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=0-1, 5-6", "bytes=-5,0-1", "bytes=0-1,5000-6000"])
def test_well_formed_multi_range_raises_multiple_ranges_for_a_whole_file_answer(header):
    with pytest.raises(MultipleRanges):
        parse_range(header, 1000)


CONTENT_RANGES = [
    # (start, end half-open, size, header value)
    (0, 100, 1000, "bytes 0-99/1000"),
    (900, 1000, 1000, "bytes 900-999/1000"),
    (999, 1000, 1000, "bytes 999-999/1000"),
    (0, 1, 1, "bytes 0-0/1"),
    (0, 1000, 1000, "bytes 0-999/1000"),
]


@pytest.mark.parametrize(("start", "end", "size", "expected"), CONTENT_RANGES)
def test_content_range_formats_the_inclusive_last_byte(start, end, size, expected):
    assert content_range(start, end, size) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", "bytes 0-99/1000"),
        ("bytes=-100", "bytes 900-999/1000"),
        ("bytes=500-5000", "bytes 500-999/1000"),
        ("bytes=100-", "bytes 100-999/1000"),
    ],
)
def test_content_range_of_a_parsed_range_echoes_the_clamped_request(header, expected):
    assert content_range(*parse_range(header, 1000), 1000) == expected
