"""Identity names: one canonical Unicode form, so 'José' typed two ways is one person."""

from __future__ import annotations

import unicodedata

from .errors import InvalidIdentityError

MAX_IDENTITY_LENGTH = 256


def normalize_identity(name: object) -> str:
    """Return *name* in NFC form, or raise :class:`InvalidIdentityError` saying why not.

    Names are compared after NFC normalization and nothing else: case and inner
    spaces are kept, because 'Li Na' and 'li na' may well be two people.
    """
    if not isinstance(name, str):
        raise InvalidIdentityError(
            f"identity must be <str> (got {name!r} that is a <{type(name).__name__}>)"
        )
    normalized = unicodedata.normalize("NFC", name)
    if not normalized or normalized.strip() != normalized:
        raise InvalidIdentityError(
            f"identity must be non-empty with no leading or trailing spaces (got {name!r})"
        )
    if len(normalized) > MAX_IDENTITY_LENGTH:
        raise InvalidIdentityError(
            f"identity must be at most {MAX_IDENTITY_LENGTH} characters "
            f"(got {len(normalized)}): use a short id and keep the rest as display_name"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in normalized):
        raise InvalidIdentityError(
            f"identity must not contain control, format or lone surrogate characters (got {name!r})"
        )
    return normalized
