from __future__ import annotations

import pytest

from edge_personalizer.classify.privacy import PrivacyPolicy


@pytest.mark.parametrize(("headers", "cookies", "policy", "allowed"), [
    ({"sec-gpc": "1"}, {}, PrivacyPolicy(), False),
    ({"dnt": "1"}, {}, PrivacyPolicy(), False),
    ({"dnt": "1"}, {}, PrivacyPolicy(honor_dnt=False), True),
    ({}, {}, PrivacyPolicy(consent_cookie="consent"), False),
    ({}, {"consent": "no"}, PrivacyPolicy(consent_cookie="consent"), False),
    ({}, {"consent": "yes"}, PrivacyPolicy(consent_cookie="consent"), True),
    # Consent tools set their cookie whatever the visitor chose: only a yes is a yes.
    ({}, {"consent": " Accepted "}, PrivacyPolicy(consent_cookie="consent"), True),
    ({}, {"consent": "reject"}, PrivacyPolicy(consent_cookie="consent"), False),
    ({}, {"consent": "off"}, PrivacyPolicy(consent_cookie="consent"), False),
    ({}, {"consent": "yesterday"}, PrivacyPolicy(consent_cookie="consent"), False),
    ({}, {"CookieConsent": "{necessary:true,marketing:false}"},
     PrivacyPolicy(consent_cookie="CookieConsent"), False),
    ({}, {"CookieConsent": "{necessary:true,marketing:false}"},
     PrivacyPolicy(consent_cookie="CookieConsent", consent_value="marketing:true"), False),
    ({}, {"CookieConsent": "{necessary:true,Marketing:True}"},
     PrivacyPolicy(consent_cookie="CookieConsent", consent_value="marketing:true"), True),
    ({}, {}, PrivacyPolicy(), True),
])
def test_privacy_policy(headers: dict[str, str], cookies: dict[str, str],
                        policy: PrivacyPolicy, allowed: bool) -> None:
    assert policy.allows(headers, cookies) is allowed
