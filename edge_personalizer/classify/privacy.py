"""Whether a visitor's profile may be kept at all: privacy signals and consent."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

# A consent cookie's value that says yes, unless the operator says what does: consent
# tools set their cookie whatever the visitor chose, so anything else is a no.
PLAIN_YES: Final = r"^\s*(1|true|yes|y|on|accept(ed)?|allow(ed)?|granted|opt-?in)\s*$"


@dataclass(frozen=True)
class PrivacyPolicy:
    """When no profile may be kept: Global Privacy Control always, Do Not Track when
    `honor_dnt`, and in consent mode unless the site's consent cookie says yes (its value
    matches `consent_value`, searched in any case; PLAIN_YES without one)."""

    honor_dnt: bool = True
    consent_cookie: str | None = None
    consent_value: str | None = None
    _says_yes: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_says_yes", re.compile(self.consent_value or PLAIN_YES,
                                                         re.IGNORECASE))

    def allows(self, headers: Mapping[str, str], cookies: Mapping[str, str]) -> bool:
        if headers.get("sec-gpc", "").strip() == "1":
            return False
        if self.honor_dnt and headers.get("dnt", "").strip() == "1":
            return False
        if self.consent_cookie is not None:
            value = cookies.get(self.consent_cookie)
            return value is not None and self._says_yes.search(value) is not None
        return True
