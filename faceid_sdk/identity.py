"""Identity names: one canonical Unicode form, so 'José' typed two ways is one person."""

from __future__ import annotations

import unicodedata

from .errors import InvalidIdentityError

MAX_IDENTITY_LENGTH = 256

# Letters and symbols that render as nothing (Hangul fillers, the braille blank, the
# combining grapheme joiner, Khmer inherent vowels, Mongolian selectors): a name made of
# them looks empty in every operator's list. Control, format (bidi overrides, zero-width
# joiners), private-use and unassigned characters are refused by category.
_INVISIBLE = frozenset(
    "\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5\u180b\u180c\u180d\u180e\u180f"
)
_REFUSED_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def unsafe_character(text: str) -> str | None:
    """The first character of *text* that must not reach an operator's screen, as ``U+XXXX``.

    Control and escape characters (terminal escapes, BEL), bidi overrides and other format
    characters, private-use, unassigned and invisible characters; ``None`` if there is none.
    """
    for ch in text:
        if unicodedata.category(ch) in _REFUSED_CATEGORIES or ch in _INVISIBLE:
            return f"U+{ord(ch):04X}"
    return None


def check_text(value: str, *, field: str) -> str:
    """*value* (a display name, an external id) if it is safe to show, else
    :class:`InvalidIdentityError` naming the field and the character."""
    bad = unsafe_character(value)
    if bad is not None:
        raise InvalidIdentityError(
            f"{field} must not contain control, format, invisible or unassigned characters "
            f"(got {bad}): send plain visible text"
        )
    if value.strip() and not any(unicodedata.category(ch)[0] in "LNPS" for ch in value):
        raise InvalidIdentityError(f"{field} must contain at least one visible character")
    return value


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
    bad = unsafe_character(normalized)
    if bad is not None:
        raise InvalidIdentityError(
            "identity must not contain control, format, invisible, unassigned or lone "
            f"surrogate characters (got {bad})"
        )
    if not any(unicodedata.category(ch)[0] in "LNPS" for ch in normalized):
        raise InvalidIdentityError("identity must contain at least one visible character")
    return normalized
