"""The node-spec grammar: examples, errors, and property tests against a reference model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imaging.errors import SelectorError
from imaging.selector import format_ranges, parse, select

KNOWN = range(1, 38)


@pytest.mark.parametrize(("specs", "expected"), [
    (["7"], [7]),
    (["007"], [7]),
    (["fit7"], [7]),
    (["reboot07"], [7]),
    (["FIT7"], [7]),
    (["1-12", "fit15-reboot18", "~4-6"], [1, 2, 3, 7, 8, 9, 10, 11, 12, 15, 16, 17, 18]),
    (["1-10-2"], [1, 3, 5, 7, 9]),
    (["1-9-2"], [1, 3, 5, 7, 9]),
    (["1,3,5"], [1, 3, 5]),
    (["~4", "1-5"], [1, 2, 3, 4, 5]),   # arguments apply in order
    (["1-5", "~4"], [1, 2, 3, 5]),
    (["1-5,~2,7"], [1, 3, 4, 5, 7]),   # ~ applies to one comma item, as in rhubarbe
    (["1-7-3"], [1, 4, 7]),
    (["3-3"], [3]),
])
def test_examples(specs: list[str], expected: list[int]) -> None:
    assert select(specs, known=KNOWN) == expected


def test_all_scope_applies_first() -> None:
    assert select(["~4"], all_scope="1-37", known=KNOWN) == [n for n in KNOWN if n != 4]
    assert select([], all_scope="1-37") == list(KNOWN)


@pytest.mark.parametrize(("spec", "words"), [
    ("10-1", "backwards"),
    ("1-10-0", "step"),
    ("fedora-21", "not a node spec"),
    ("foo7", "unknown prefix"),
    ("1,,2", "not a node spec"),
    ("1-2-3-4", "not a node spec"),
    ("~", "not a node spec"),
    ("", "not a node spec"),
    ("1.5", "not a node spec"),
    ("99999999", "too large"),
])
def test_malformed(spec: str, words: str) -> None:
    with pytest.raises(SelectorError, match=words):
        select([spec], known=KNOWN)


def test_empty_and_unknown() -> None:
    with pytest.raises(SelectorError, match="selects no node"):
        select(["1-3", "~1-3"])
    with pytest.raises(SelectorError, match=r"no node 38-40 in the inventory \(it has 1-37\)"):
        select(["35-40"], known=KNOWN)


def test_format_ranges_round_trips() -> None:
    assert format_ranges([1, 2, 3, 7, 9, 10]) == "1-3,7,9-10"
    assert format_ranges([]) == ""
    assert select([format_ranges([4, 9, 10, 11])]) == [4, 9, 10, 11]


# --- property tests ----------------------------------------------------------

items = st.builds(
    lambda neg, prefix1, low, width, prefix2, step, zeros: (
        neg, low, low + width, step,
        ("~" if neg else "") + prefix1 + "0" * zeros + str(low)
        + (f"-{prefix2}{low + width}" if width or step else "")
        + (f"-{step}" if step else ""),
    ),
    st.booleans(), st.sampled_from(["", "fit", "reboot"]), st.integers(1, 60),
    st.integers(0, 20), st.sampled_from(["", "fit", "reboot"]), st.integers(0, 5), st.integers(0, 2),
)
arguments = st.lists(st.lists(items, min_size=1, max_size=3), min_size=1, max_size=5)


def reference(args: list[list[tuple]]) -> set[int]:
    """The obvious model: walk the items in order, adding or removing."""
    chosen: set[int] = set()
    for argument in args:
        for neg, low, high, step, _ in argument:
            for number in range(low, high + 1, step or 1):
                if neg:
                    chosen.discard(number)
                else:
                    chosen.add(number)
    return chosen


@given(arguments)
def test_same_set_as_reference(args: list[list[tuple]]) -> None:
    specs = [",".join(item[-1] for item in argument) for argument in args]
    expected = reference(args)
    if expected:
        assert select(specs) == sorted(expected)
    else:
        with pytest.raises(SelectorError):
            select(specs)


@given(st.lists(st.text(max_size=20), max_size=4), st.booleans())
def test_any_input_raises_only_the_documented_error(specs: list[str], use_all: bool) -> None:
    try:
        result = select(specs, all_scope="1-37" if use_all else None, known=KNOWN)
    except SelectorError as exc:
        assert str(exc) and "\n" not in str(exc)  # one line for the user
    else:
        assert result == sorted(set(result)) and set(result) <= set(KNOWN)


@given(st.text(max_size=30))
def test_parse_never_raises_anything_else(spec: str) -> None:
    try:
        terms = parse(spec)
    except SelectorError:
        return
    assert all(term.numbers.step > 0 for term in terms)
