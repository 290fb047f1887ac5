"""Text normalisation shared by matching and by the validator's synonym checks."""

from __future__ import annotations

import re
import unicodedata

_PUNCTUATION = re.compile(r"[^\w\s]|_", re.UNICODE)
_SPACES = re.compile(r"\s+")
_INVISIBLE = dict.fromkeys(
    [0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0xFEFF]
)


def normalize(value: str) -> str:
    """Lower case, no accents, no punctuation, single spaces: « Représentant-des usagers ! »
    becomes ``representant des usagers``."""
    value = value.translate(_INVISIBLE)
    value = unicodedata.normalize("NFKD", value.casefold())
    value = "".join(ch for ch in value if not unicodedata.combining(ch))
    value = value.replace("œ", "oe").replace("æ", "ae").replace("’", "'")
    value = _PUNCTUATION.sub(" ", value)
    return _SPACES.sub(" ", value).strip()
