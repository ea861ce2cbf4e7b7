"""CDAP version and version-range rules (seed: pipeline-versions-across-releases)."""

from __future__ import annotations

import pytest

from flowport.errors import ValidationFailed, VersionSyntaxError
from flowport.model.versions import ArtifactVersion, VersionRange, VersionSpec, parse_version_spec

V = ArtifactVersion.parse


def test_missing_components_count_as_zero() -> None:
    assert V("1.0") == V("1.0.0")
    assert V("1") == V("1.0.0")
    assert hash(V("1.0")) == hash(V("1.0.0"))
    assert str(V("1.0")) == "1.0"  # the text as written is kept for display


def test_compared_by_major_then_minor_then_patch_numerically() -> None:
    assert V("2.0.0") > V("1.99.99")
    assert V("1.10.0") > V("1.9.0")
    assert V("1.2.10") > V("1.2.9")
    assert sorted([V("1.10"), V("1.2"), V("0.9.9"), V("1.2.1")]) == [
        V("0.9.9"),
        V("1.2"),
        V("1.2.1"),
        V("1.10"),
    ]


def test_snapshot_is_below_its_release_and_above_the_previous_patch() -> None:
    snapshot = V("6.3.1-SNAPSHOT")
    assert snapshot.is_snapshot
    assert not V("6.3.1").is_snapshot
    assert snapshot < V("6.3.1")
    assert snapshot > V("6.3.0")
    assert snapshot != V("6.3.1")


def test_seed_snapshot_range_matches_snapshot_but_not_release() -> None:
    spec = parse_version_spec("[6.1.1,6.3.1)")
    assert spec.matches(V("6.3.1-SNAPSHOT"))
    assert not spec.matches(V("6.3.1"))


def test_seed_range_6_1_1_to_7() -> None:
    r = VersionRange.parse("[6.1.1,7.0.0)")
    assert V("6.1.1") in r
    assert V("6.9.12") in r
    assert V("6.1.0") not in r
    assert V("7.0.0") not in r
    assert V("7.0.1") not in r


def test_exclusive_lower_inclusive_upper() -> None:
    r = VersionRange.parse("(1.0,2.0]")
    assert V("1.0") not in r
    assert V("1.0.0") not in r  # missing components: 1.0 == 1.0.0, still excluded
    assert V("1.0.1") in r
    assert V("2.0") in r
    assert V("2.0.0") in r
    assert V("2.0.1") not in r


def test_missing_components_in_bounds() -> None:
    r = VersionRange.parse("[1.0,1.0.0]")
    assert V("1.0.0") in r
    assert V("1.0.1") not in r
    assert V("0.16.0") in VersionRange.parse("[0.0,100.0]")
    assert V("99.9.9") in VersionRange.parse("[0.0,100.0]")


def test_unbounded_sides() -> None:
    assert V("99.0") in VersionRange.parse("[1.0,)")
    assert V("0.9") not in VersionRange.parse("[1.0,)")
    assert V("0.0.1") in VersionRange.parse("(,2.0)")
    assert V("2.0") not in VersionRange.parse("(,2.0)")


def test_lower_above_upper_is_rejected() -> None:
    with pytest.raises(VersionSyntaxError, match=r"lower bound 2\.0 is above upper bound 1\.0"):
        VersionRange.parse("[2.0,1.0]")


def test_empty_range_is_rejected() -> None:
    with pytest.raises(VersionSyntaxError, match="empty"):
        VersionRange.parse("[1.0,1.0)")
    assert V("1.0") in VersionRange.parse("[1.0,1.0]")


@pytest.mark.parametrize("text", ["", "abc", "x.1", "1.2.3.4", "v1.0", "1..0", "-1.0", "1.0 beta"])
def test_malformed_versions_are_rejected(text: str) -> None:
    with pytest.raises(VersionSyntaxError, match="is not a version"):
        V(text)


@pytest.mark.parametrize("text", ["[1.0", "1.0]", "[1.0,2.0,3.0]", "{1.0,2.0}", "[1.0;2.0]", "[]"])
def test_malformed_ranges_are_rejected(text: str) -> None:
    with pytest.raises(VersionSyntaxError, match="is not a version"):
        VersionRange.parse(text)


def test_malformed_bound_is_rejected() -> None:
    with pytest.raises(VersionSyntaxError, match="'a' is not a version"):
        parse_version_spec("[a,2.0)")


def test_version_errors_are_validation_errors() -> None:
    assert issubclass(VersionSyntaxError, ValidationFailed)


INSTALLED = [V("0.9.0"), V("1.0.0"), V("1.2.0"), V("1.5.0-SNAPSHOT"), V("2.0.0"), V("2.1.0-SNAPSHOT")]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, "2.1.0-SNAPSHOT"),
        ("", "2.1.0-SNAPSHOT"),
        ("1.2", "1.2.0"),
        ("[1.0,2.0)", "1.5.0-SNAPSHOT"),
        ("[1.0.0,1.5.0)", "1.5.0-SNAPSHOT"),  # a SNAPSHOT is below its release
        ("[1.0.0,1.5.0-SNAPSHOT)", "1.2.0"),
        ("[1.0.0,2.0.0]", "2.0.0"),
        ("(0.9.0,1.2.0)", "1.0.0"),
        ("[0.0.1,10.0.0)", "2.1.0-SNAPSHOT"),
        ("[3.0,4.0)", None),
        ("1.1.0", None),
    ],
)
def test_highest_matching_version_is_chosen(spec: str | None, expected: str | None) -> None:
    best = parse_version_spec(spec).best(INSTALLED)
    assert (str(best) if best is not None else None) == expected


def test_spec_kinds_and_text() -> None:
    assert parse_version_spec(None).is_any
    assert str(parse_version_spec(None)) == "any version"
    assert parse_version_spec("1.2.0") == VersionSpec(exact=V("1.2.0"))
    assert str(parse_version_spec(" [1.0,2.0) ")) == "[1.0,2.0)"
