"""Preview links: a signed, expiring URL parameter that shows a marketer one variant."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from pathlib import Path
from types import MappingProxyType
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .fields import suggest
from .model import Decision, RuleSet, SlotChoice

PREVIEW_PARAM = "__ep_preview"
# Names listed when a preview names none of the rules: enough to spot the one meant.
_NAMES_LISTED = 30


class PreviewSigner:
    """Signs and checks preview tokens with a key derived from the profile key."""

    def __init__(self, key: bytes) -> None:
        self._key = hmac.digest(key, b"edge-personalizer preview links", hashlib.sha256)

    def sign(self, rule: str, variant: str | None, expires: float) -> str:
        body = json.dumps([rule, variant, int(expires)], separators=(",", ":")).encode()
        signature = hmac.digest(self._key, body, hashlib.sha256)[:16]
        return (base64.urlsafe_b64encode(body).rstrip(b"=") + b"."
                + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()

    def verify(self, token: str, now: float) -> tuple[str, str | None] | None:
        try:
            body_text, _, signature_text = token.partition(".")
            body = base64.urlsafe_b64decode(body_text + "=" * (-len(body_text) % 4))
            signature = base64.urlsafe_b64decode(signature_text + "=" * (-len(signature_text) % 4))
            if not hmac.compare_digest(signature, hmac.digest(self._key, body,
                                                              hashlib.sha256)[:16]):
                return None
            rule, variant, expires = json.loads(body)
        except (ValueError, binascii.Error, TypeError):
            return None
        if not isinstance(rule, str) or now > expires:
            return None
        return rule, variant if isinstance(variant, str) else None

    def link(self, url: str, rule: str, variant: str | None, expires: float) -> str:
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                 if k != PREVIEW_PARAM]
        query.append((PREVIEW_PARAM, self.sign(rule, variant, expires)))
        return urlunsplit(parts._replace(query=urlencode(query)))


def preview_decision(signer: PreviewSigner, token: str, ruleset: RuleSet,
                     now: float | None = None) -> Decision | None:
    """The decision a valid token forces: the named rule's actions, or the named
    experiment's variant, whoever the visitor is."""
    found = signer.verify(token, time.time() if now is None else now)
    if found is None:
        return None
    name, variant = found
    for rule in ruleset.rules:
        if rule.name == name:
            slots = {slot: SlotChoice(slot=slot, variant=rule.name, reason="rule",
                                      by=rule.name, content=content)
                     for slot, content in rule.slots.items()}
            return Decision(slots=MappingProxyType(slots), redirect=rule.redirect,
                            redirect_rule=rule.name if rule.redirect else None,
                            headers=rule.headers, cookies=rule.cookies, rules=(rule.name,))
    for experiment in ruleset.experiments:
        if experiment.name == name and variant is not None \
                and variant in experiment.variants:
            contents = experiment.variants[variant]
            slots = {slot: SlotChoice(slot=slot, variant=variant, reason="experiment",
                                      by=experiment.name, content=contents.get(slot))
                     for slot in experiment.slots}
            return Decision(slots=MappingProxyType(slots))
    return None


def check_preview(ruleset: RuleSet, name: str, variant: str | None, *,
                  directory: Path) -> None:
    """ValueError unless a link previewing `name` (and `variant`) shows something with
    these rules: a rule, shown with no variant, or one variant of an experiment. A link
    carries only the names, and one the rules do not know shows the page as it is."""
    if any(rule.name == name for rule in ruleset.rules):
        if variant is not None:
            raise ValueError(f"{name!r} is a rule, not an experiment: its link shows what the "
                             "rule does, with no variant; leave out --variant")
        return
    experiment = ruleset.experiment(name)
    if experiment is None:
        rules = sorted(rule.name for rule in ruleset.rules)
        experiments = sorted(e.name for e in ruleset.experiments)
        if not rules and not experiments:
            raise ValueError(f"no rule or experiment named {name!r} in {directory}: it "
                             "holds none")
        raise ValueError(f"no rule or experiment named {name!r} in {directory}"
                         + (suggest(name, [*rules, *experiments]) or ".")
                         + f" Its rules: {_listed(rules)}; its experiments: "
                         f"{_listed(experiments)}")
    variants = ", ".join(experiment.variants)
    if variant is None:
        raise ValueError(f"experiment {name!r} has the variants {variants}; pick one with "
                         "--variant")
    if variant not in experiment.variants:
        raise ValueError(f"experiment {name!r} has no variant {variant!r}"
                         + (suggest(variant, experiment.variants) or ".")
                         + f" Its variants: {variants}")


def _listed(names: list[str]) -> str:
    if not names:
        return "none"
    more = len(names) - _NAMES_LISTED
    return ", ".join(names[:_NAMES_LISTED]) + (f" and {more:,} more" if more > 0 else "")
