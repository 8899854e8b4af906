"""The one decision rule: a :class:`DecisionPolicy` turns search results into answers.

Every gallery backend (flat, approximate, Milvus), the Enroller, the CLI and the server
decide through :meth:`DecisionPolicy.identify` and :meth:`DecisionPolicy.verify`; nothing
else compares a distance with the threshold. The mission's rule is the plain policy
(``DecisionPolicy(threshold)``): the nearest template speaks for its identity, accepted
only strictly under the threshold. ``reject_ambiguous`` adds open-set safety: when another
identity is under the threshold too, naming either would be a coin toss (or the query is
a forged "hub" that sits near everyone), so the answer is ``"ambiguous"`` and refused, for
identify and verify alike.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from .._defaults import resolve_threshold
from ..errors import InvalidFeatureError
from .results import EMPTY, Identification, Pick

__all__ = ["DEFAULT_THRESHOLD", "DecisionPolicy", "check_threshold"]

#: Euclidean distance under which a match is accepted (features are L2-normalized).
#: The shipped model's calibrated threshold (``model.json``), the paper's 0.5 without one.
DEFAULT_THRESHOLD = resolve_threshold(None, model_id=None).value


def check_threshold(threshold: object) -> float:
    """*threshold* as a float, or :class:`InvalidFeatureError` (``code="threshold"``)."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)):
        raise InvalidFeatureError(
            f"threshold must be a number (got {threshold!r} that is a "
            f"<{type(threshold).__name__}>)",
            code="threshold",
        )
    value = float(threshold)
    if not (math.isfinite(value) and value > 0):
        raise InvalidFeatureError(
            f"threshold must be a finite Euclidean distance > 0 (got {threshold!r}): "
            f"{DEFAULT_THRESHOLD} suits L2-normalized features",
            code="threshold",
        )
    return value


@attrs.frozen
class DecisionPolicy:
    """How search results become answers: the threshold, the ambiguity rule, the runner-up.

    Args:
        threshold: Accept only strictly under this Euclidean distance.
        reject_ambiguous: Refuse (``reason="ambiguous"``) when another identity is under
            the threshold too: identify and verify alike.
        runner_up: Report the nearest other identity in every identification (implied by
            ``reject_ambiguous``, which needs it). Off, a flat search of one query is about
            twice as fast.
    """

    threshold: float = attrs.field(default=DEFAULT_THRESHOLD, converter=check_threshold)
    reject_ambiguous: bool = attrs.field(default=False, converter=bool)
    runner_up: bool = attrs.field(default=False, converter=bool)

    @property
    def needs_runner_up(self) -> bool:
        """Whether searches must find the nearest other identity for this policy."""
        return self.runner_up or self.reject_ambiguous

    def evolve(self, **changes: object) -> DecisionPolicy:
        """A copy with some settings changed (``policy.evolve(threshold=0.8)``)."""
        return attrs.evolve(self, **changes)

    def identify(self, best: Pick | None, runner: Pick | None) -> Identification:
        """The answer to 1:N from the nearest template and the nearest of another identity.

        Distances in *best* and *runner* are exact Euclidean; ``None`` means none exists.
        *runner* is ignored unless :attr:`needs_runner_up`.
        """
        if best is None:
            return EMPTY
        return self._answer(best, runner)

    def verify(self, claimed: Pick, other: Pick | None) -> Identification:
        """The answer to 1:1: *claimed* is the claimed identity's nearest template, *other*
        the nearest template of anyone else (needed only when :attr:`needs_runner_up`)."""
        return self._answer(claimed, other)

    def _answer(self, best: Pick, runner: Pick | None) -> Identification:
        name, distance, template_id = best
        under = distance < self.threshold
        if not self.needs_runner_up:
            return Identification(identity=name, distance=distance, accepted=under,
                                  template_id=template_id)
        runner_distance = math.inf if runner is None else runner[1]
        ambiguous = runner_distance < self.threshold
        refused = under and ambiguous and self.reject_ambiguous
        return Identification(
            identity=name,
            distance=distance,
            accepted=under and not refused,
            template_id=template_id,
            runner_up=None if runner is None else runner[0],
            runner_up_distance=runner_distance,
            ambiguous=ambiguous,
            reason="ambiguous" if refused else ("match" if under else "no_match"),
        )
