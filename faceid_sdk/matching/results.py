"""What a search answers: one :class:`Identification` per query, :class:`Candidate` lists."""

from __future__ import annotations

import math
from typing import Final

import attrs

__all__ = ["REASONS", "Candidate", "Identification", "Pick"]

#: Why an answer is what it is, in the words the server, the CLI and the page use.
REASONS: Final = ("match", "no_match", "ambiguous", "empty_gallery")

#: ``(identity, exact Euclidean distance, template id)`` of one template a search found.
Pick = tuple[str, float, int]


def _default_reason(self: Identification) -> str:
    if self.identity is None:
        return "empty_gallery"
    return "match" if self.accepted else "no_match"


@attrs.frozen(repr=False)
class Identification:
    """The answer to one query: the nearest identity and whether it is accepted.

    ``identity`` is the owner of the nearest template (``None`` only on an empty gallery),
    reported even when rejected so that callers can log near misses; ``distance`` is
    Euclidean (``math.inf`` on an empty gallery); ``accepted`` follows the
    :class:`~faceid_sdk.DecisionPolicy` that decided it, and ``reason`` says why in one word
    of :data:`REASONS`: ``"match"``, ``"no_match"`` (not under the threshold),
    ``"ambiguous"`` (under it, and so is another identity, and the policy refuses that) or
    ``"empty_gallery"``. When the runner-up was computed (a policy with ``runner_up`` or
    ``reject_ambiguous``), ``runner_up`` is the nearest *other* identity
    (``runner_up_distance`` is ``inf`` when there is none) and ``ambiguous`` says that it is
    under the threshold too; otherwise both are ``None`` and ``ambiguous`` is false.
    """

    identity: str | None
    distance: float
    accepted: bool
    template_id: int | None = None
    runner_up: str | None = None
    runner_up_distance: float | None = None
    ambiguous: bool = False
    reason: str = attrs.field(default=attrs.Factory(_default_reason, takes_self=True))

    def __repr__(self) -> str:
        verdict = "accepted" if self.accepted else f"rejected ({self.reason})"
        extra = " ambiguous" if self.ambiguous and self.accepted else ""
        return f"<Identification {self.identity!r} d={self.distance:.3f} {verdict}{extra}>"


EMPTY: Final = Identification(identity=None, distance=math.inf, accepted=False)


@attrs.frozen(repr=False)
class Candidate:
    """One identity in a top-k review list, with the distance of its nearest template."""

    identity: str
    distance: float
    template_id: int

    def __repr__(self) -> str:
        return f"<Candidate {self.identity!r} d={self.distance:.3f}>"
