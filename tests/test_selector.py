"""The node-spec grammar: examples, errors, and property tests against a reference model."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imaging.errors import SelectorError
from imaging.selector import MAX_NODE, fold_hostnames, format_ranges, hostname_number, parse, parse_number, select

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
    (["fit[01-03,07]"], [1, 2, 3, 7]),    # ClusterShell's folded form
    (["reboot[1-2],fit[5],9", "~fit[02]"], [1, 5, 9]),
    (["[3-4]"], [3, 4]),
    (["1-6", "~fit[2-3,5]"], [1, 4, 6]),  # ~ applies to the whole bracket item
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
    ("fit[3-1]", "range 3-1 goes backwards"),
    ("fit[01-03", "not a node spec"),
    ("fit[]", "not a node spec"),
    ("fit[1,]", "not a node spec"),
    ("fit[1-3]x", "not a node spec"),
    ("node[1-3]", "unknown prefix 'node'"),
    ("fit[1-9/2]", "not a node spec"),
])
def test_malformed(spec: str, words: str) -> None:
    with pytest.raises(SelectorError, match=words):
        select([spec], known=KNOWN)


def test_empty_and_unknown() -> None:
    with pytest.raises(SelectorError, match="selects no node"):
        select(["1-3", "~1-3"])
    with pytest.raises(SelectorError, match=r"no node 38-40 in the inventory \(it has 1-37\)"):
        select(["35-40"], known=KNOWN)


# --- item 1: numbers too long for int() ---------------------------------------

@pytest.mark.parametrize(("spec", "words"), [
    ("1" * 5000, r"'11111111111111111111'… \(5000 characters\) is not a node: number too large"
                 r" \(node numbers go up to 99999\)"),
    ("1-" + "9" * 5000, "number too large"),
    ("fit" + "7" * 4301, "number too large"),
    ("1-5-" + "2" * 5000, "the step must be a positive number up to 99999"),
    ("fit[1-" + "3" * 5000 + "]", "number too large"),
    ("~" + "4" * 100_000, "number too large"),
])
def test_item1_huge_numbers_are_one_short_line(spec: str, words: str) -> None:
    with pytest.raises(SelectorError, match=words) as caught:
        select([spec])
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


def test_item1_leading_zeros_are_not_a_large_number() -> None:
    assert select(["0" * 5000 + "7"]) == [7]
    assert parse_number("0" * 5000 + "99999") == MAX_NODE
    assert parse_number("100000") is None and parse_number("0") == 0


# --- item 4: ASCII digits only --------------------------------------------------

@pytest.mark.parametrize("spec", ["１-３", "٣", "fit٠٧", "1-१०", "۳", "1-5-２", "fit[１-3]", "~４"])
def test_item4_non_ascii_digits_are_refused(spec: str) -> None:
    with pytest.raises(SelectorError, match="is not a node spec: write its numbers with the ASCII digits 0-9"):
        select([spec])


@pytest.mark.parametrize("digits", ["１", "٣", "²", "", "1 ", "-1", "+1", "1_0"])
def test_item4_parse_number_takes_ascii_digits_only(digits: str) -> None:
    assert parse_number(digits) is None


@pytest.mark.parametrize(("hostname", "number"), [
    ("fit07", 7), ("reboot7", 7), ("fit01.r2lab.inria.fr", 1), ("42", 42), ("fit099999", 99_999),
    ("fit1a2", None), ("fit-7", None), ("fit", None), ("fit0", None), ("fit100000", None),
    ("fit٣", None), ("a7b", None), (".fit7", None), ("fit" + "1" * 5000, None),
])
def test_item4_hostname_number(hostname: str, number: int | None) -> None:
    assert hostname_number(hostname) == number


# --- item 7: unknown nodes skipped on request, folding ------------------------------

HOLES = [n for n in range(1, 43) if not 38 <= n <= 41]


def test_item7_skip_unknown_drops_and_says_which() -> None:
    notes: list[str] = []
    assert select(["1-42"], known=HOLES, skip_unknown=notes.append) == HOLES
    assert notes == ["skipping 38-41: not in the inventory"]
    notes.clear()
    assert select(["2-3"], known=HOLES, skip_unknown=notes.append) == [2, 3]
    assert notes == []  # nothing dropped, nothing said
    with pytest.raises(SelectorError, match=r"no node 38-41 in the inventory \(it has 1-37,42\)"):
        select(["38-41"], known=HOLES, skip_unknown=notes.append)  # nothing known left: still an error
    with pytest.raises(SelectorError, match=r"no node 38-41 in the inventory"):
        select(["1-42"], known=HOLES)  # the default refuses


@pytest.mark.parametrize(("hostnames", "folded"), [
    (["fit01", "fit02", "fit03", "fit07"], "fit[01-03,07]"),
    (["fit07"], "fit07"),
    (["fit09", "fit10", "fit11"], "fit[09-11]"),          # padding 2 holds for 10 and 11
    (["fit1", "fit2", "fit10"], "fit[1-2,10]"),
    (["fit1", "fit01", "fit001"], "fit[1,01,001]"),        # three names, three paddings
    (["fit08", "fit9", "fit10"], "fit[08,9-10]"),          # 9 is not 09: the padding breaks the run
    (["fit9", "fit010", "fit011"], "fit[9,010-011]"),
    (["fit99", "fit100"], "fit[99-100]"),
    (["fit098", "fit099", "fit100"], "fit[098-100]"),
    (["fit01", "reboot01", "fit02"], "fit[01-02],reboot01"),
    (["fit01.r2lab.inria.fr", "fit02.r2lab.inria.fr", "fit02"], "fit02,fit[01-02].r2lab.inria.fr"),
    (["r2d2-07", "r2d2-08"], "r2d2-[07-08]"),               # the last number is folded
    (["fit07a", "fit08a"], "fit[07-08]a"),
    (["server", "fit1", "fit"], "fit,fit1,server"),
    (["ip10001", "ip10002", "ip10003"], "ip[10001-10003]"),
    (["n" + "1" * 19, "n" + "1" * 17 + "2", "n" + "1" * 17 + "3"],  # 19 digits: too long to fold
     f"n[{'1' * 17}2-{'1' * 17}3],n{'1' * 19}"),
    ([], ""),
])
def test_item7_fold_hostnames_examples(hostnames: list[str], folded: str) -> None:
    assert fold_hostnames(hostnames) == folded


def test_format_ranges_round_trips() -> None:
    assert format_ranges([1, 2, 3, 7, 9, 10]) == "1-3,7,9-10"
    assert format_ranges([]) == ""
    assert select([format_ranges([4, 9, 10, 11])]) == [4, 9, 10, 11]


def expand_reference(folded: str) -> list[str]:
    """ClusterShell's ``nodeset -e`` for one-dimensional sets: the oracle of the fold."""
    names = []
    for part in re.findall(r"[^,\[]*(?:\[[^\]]*\][^,]*)?", folded):
        match = re.fullmatch(r"(.*)\[(.*)\](.*)", part)
        if match is None:
            names += [part] if part else []
            continue
        head, body, tail = match.groups()
        for item in body.split(","):
            low, _, high = item.partition("-")
            width = len(low) if low.startswith("0") else 0
            names += [f"{head}{n:0{width}d}{tail}" for n in range(int(low), int(high or low) + 1)]
    return names


numerals = st.builds(lambda n, zeros: "0" * zeros + str(n),
                     st.one_of(st.integers(0, 12), st.integers(0, 2000)), st.integers(0, 3))
hostnames = st.one_of(
    st.builds(lambda head, digits, tail: head + digits + tail,
              st.sampled_from(["fit", "reboot", "r2d", "", "node-", "x9y"]), numerals,
              st.sampled_from(["", ".r2lab.inria.fr", "a", "-ib.example.org"])),
    st.sampled_from(["server", "gateway.example.org", "fit"]),
)


@given(st.lists(hostnames, max_size=40))
def test_item7_fold_then_expand_gives_back_the_hostnames(names: list[str]) -> None:
    folded = fold_hostnames(names)
    expanded = expand_reference(folded)
    assert sorted(expanded) == sorted(set(names))   # every name once, none invented
    assert fold_hostnames(expanded) == folded        # and folding is canonical


@given(st.sets(st.integers(1, MAX_NODE), min_size=1, max_size=60), st.sampled_from(["fit", "reboot"]),
       st.integers(1, 5))
def test_item7_folded_hostnames_are_a_spec_of_the_same_nodes(numbers: set[int], prefix: str, width: int) -> None:
    folded = fold_hostnames(f"{prefix}{n:0{width}d}" for n in numbers)
    assert select([folded]) == sorted(numbers)


@given(st.sets(st.integers(0, MAX_NODE), min_size=1, max_size=60))
def test_item7_format_ranges_is_a_spec_of_the_same_nodes(numbers: set[int]) -> None:
    folded = format_ranges(numbers)
    assert select([folded]) == sorted(numbers)
    assert len(folded.split(",")) == len([n for n in numbers if n - 1 not in numbers])  # maximal runs


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
Item = tuple[bool, int, int, int, str]  # remove?, low, high, step, the item's text
arguments = st.lists(st.lists(items, min_size=1, max_size=3), min_size=1, max_size=5)


def reference(args: list[list[Item]]) -> set[int]:
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
def test_same_set_as_reference(args: list[list[Item]]) -> None:
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
