"""What a publisher asks of a publish, as one value carried from the caller to the
commit: the admin form, the API, the management command and the demo build it; the job
row stores it; the pipeline reads it back from the job.

A frozen dataclass, so the five choices travel together and nobody down the line
changes one by accident.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class PublishOptions:
    """`version`: the publisher's explicit version ("" lets the change decide).
    `note`: the changelog note. `allow_breaking`: a breaking change may pass with less
    than a major bump (the changelog records it). `draft`: publish without making the
    version current (a pre-release version implies it). `inputs`: the versions this one
    was built from, `"<layer>/<name>[@<version>]"`, pinned to exact versions when the job
    is created."""

    version: str = ""
    note: str = ""
    allow_breaking: bool = False
    draft: bool = False
    inputs: tuple[str, ...] = field(default=())  # a single string is one input

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", (self.version or "").strip())
        object.__setattr__(self, "note", self.note or "")
        inputs = (self.inputs,) if isinstance(self.inputs, str) else self.inputs
        object.__setattr__(self, "inputs", tuple(inputs or ()))

    @classmethod
    def from_fields(
        cls,
        *,
        requested_version: str = "",
        version: str = "",
        note: str = "",
        allow_breaking: bool = False,
        draft: bool = False,
        inputs: Iterable[str] = (),
    ) -> PublishOptions:
        """From the field names callers have used (`requested_version` is `version`)."""
        return cls(
            version=version or requested_version,
            note=note,
            allow_breaking=bool(allow_breaking),
            draft=bool(draft),
            inputs=inputs,
        )

    @classmethod
    def of_job(cls, job: Any) -> PublishOptions:
        """The options a publish job was created with."""
        return cls(
            version=job.requested_version,
            note=job.note,
            allow_breaking=job.allow_breaking,
            draft=job.draft,
            inputs=tuple(job.inputs or ()),
        )

    def with_inputs(self, inputs: Iterable[str]) -> PublishOptions:
        return replace(self, inputs=tuple(inputs))

    def job_fields(self) -> dict[str, Any]:
        """The publish job's columns that hold these options."""
        return {
            "requested_version": self.version,
            "note": self.note,
            "allow_breaking": self.allow_breaking,
            "draft": self.draft,
            "inputs": list(self.inputs),
        }

    def audit_details(self) -> dict[str, Any]:
        return {
            "requested_version": self.version,
            "allow_breaking": self.allow_breaking,
            "draft": self.draft,
            "inputs": list(self.inputs),
        }
