"""Artifact versions and version ranges with CDAP semantics.

A version is ``MAJOR[.MINOR[.PATCH]][-SUFFIX]``. Versions compare by major,
minor and patch (a missing component counts as 0, so ``1.0`` equals
``1.0.0``), then by suffix: no suffix is *above* any suffix, so
``6.3.1-SNAPSHOT < 6.3.1``. A range uses interval notation: ``[`` and ``]``
include their bound, ``(`` and ``)`` exclude it; ``[6.1.1,7.0.0)`` matches
``6.1.1 <= v < 7.0.0``. An empty bound (``[1.0,)``) is unbounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import total_ordering

from flowport.errors import VersionSyntaxError

__all__ = ["VERSION_PATTERN", "ArtifactVersion", "VersionRange", "VersionSpec", "parse_version_spec"]

#: One version, as ``ArtifactVersion.parse`` reads it (surrounding blanks aside).
VERSION_PATTERN = r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-.]?([A-Za-z][\w.-]*))?$"
_VERSION = re.compile(VERSION_PATTERN)


@total_ordering
@dataclass(frozen=True)
class ArtifactVersion:
    """One artifact version such as ``1.2.0`` or ``6.3.1-SNAPSHOT``."""

    major: int
    minor: int = 0
    patch: int = 0
    suffix: str | None = None
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> ArtifactVersion:
        """Parse ``text``; VersionSyntaxError names the text and the expected form."""
        match = _VERSION.match(text.strip())
        if not match:
            raise VersionSyntaxError(
                f"'{text}' is not a version: expected MAJOR[.MINOR[.PATCH]][-SUFFIX], "
                "e.g. 1.2.0 or 1.3.0-SNAPSHOT"
            )
        major, minor, patch, suffix = match.groups()
        return cls(int(major), int(minor or 0), int(patch or 0), suffix, text.strip())

    @property
    def is_snapshot(self) -> bool:
        """True for ``-SNAPSHOT`` versions."""
        return self.suffix is not None and self.suffix.upper() == "SNAPSHOT"

    def _key(self) -> tuple[int, int, int, int, str]:
        # No suffix ranks above every suffix (release > SNAPSHOT of the same number).
        return (self.major, self.minor, self.patch, 1 if self.suffix is None else 0, self.suffix or "")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ArtifactVersion):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: ArtifactVersion) -> bool:
        return self._key() < other._key()

    def __str__(self) -> str:
        if self.text:
            return self.text
        base = f"{self.major}.{self.minor}.{self.patch}"
        return f"{base}-{self.suffix}" if self.suffix else base


@dataclass(frozen=True)
class VersionRange:
    """An interval of versions, e.g. ``[1.0.0,2.0.0)``."""

    lower: ArtifactVersion | None
    upper: ArtifactVersion | None
    lower_inclusive: bool
    upper_inclusive: bool
    text: str

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        """Parse interval notation; lower > upper or a malformed bound is a VersionSyntaxError."""
        raw = text.strip()
        if len(raw) < 3 or raw[0] not in "[(" or raw[-1] not in "])" or raw.count(",") != 1:
            raise VersionSyntaxError(
                f"'{text}' is not a version range: expected [LOW,HIGH), (LOW,HIGH], [LOW,HIGH] "
                "or (LOW,HIGH), e.g. [1.0.0,2.0.0)"
            )
        low_text, high_text = (part.strip() for part in raw[1:-1].split(","))
        lower = ArtifactVersion.parse(low_text) if low_text else None
        upper = ArtifactVersion.parse(high_text) if high_text else None
        result = cls(lower, upper, raw[0] == "[", raw[-1] == "]", raw)
        if lower is not None and upper is not None:
            if lower > upper:
                raise VersionSyntaxError(
                    f"Version range '{text}': lower bound {lower} is above upper bound {upper}"
                )
            if lower == upper and not (result.lower_inclusive and result.upper_inclusive):
                raise VersionSyntaxError(
                    f"Version range '{text}' is empty: use [{lower},{upper}] for one version"
                )
        return result

    def __contains__(self, version: object) -> bool:
        if not isinstance(version, ArtifactVersion):
            return False
        if self.lower is not None and (
            version < self.lower or (version == self.lower and not self.lower_inclusive)
        ):
            return False
        return not (
            self.upper is not None
            and (version > self.upper or (version == self.upper and not self.upper_inclusive))
        )

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class VersionSpec:
    """What a stage asks for: any version, one exact version, or a range."""

    exact: ArtifactVersion | None = None
    range: VersionRange | None = None

    @property
    def is_any(self) -> bool:
        """True when no version was given."""
        return self.exact is None and self.range is None

    def matches(self, version: ArtifactVersion) -> bool:
        """True when ``version`` satisfies this spec."""
        if self.exact is not None:
            return version == self.exact
        if self.range is not None:
            return version in self.range
        return True

    def best(self, installed: Iterable[ArtifactVersion]) -> ArtifactVersion | None:
        """The highest installed version that matches, or None."""
        candidates = [v for v in installed if self.matches(v)]
        return max(candidates) if candidates else None

    def __str__(self) -> str:
        if self.exact is not None:
            return str(self.exact)
        if self.range is not None:
            return str(self.range)
        return "any version"


def parse_version_spec(text: str | None) -> VersionSpec:
    """Parse a stage's ``artifact.version``: None/empty, exact, or a range."""
    if text is None or not text.strip():
        return VersionSpec()
    stripped = text.strip()
    if stripped[0] in "[(":
        return VersionSpec(range=VersionRange.parse(stripped))
    return VersionSpec(exact=ArtifactVersion.parse(stripped))
