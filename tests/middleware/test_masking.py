"""middleware.masking: every secret value hidden, short and empty values harmless."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from middleware.masking import MASK, mask


def test_every_occurrence_of_every_secret_is_masked():
    text = "token=ghs_abc123 and again ghs_abc123; secret: hunter2-long"
    assert mask(text, ["ghs_abc123", "hunter2-long"]) == f"token={MASK} and again {MASK}; secret: {MASK}"


def test_a_secret_containing_another_is_hidden_whole():
    assert mask("value: abcdef-123456", ["abcdef", "abcdef-123456"]) == f"value: {MASK}"


def test_empty_and_very_short_values_are_ignored():
    text = "on 1 a\nplain log"
    assert mask(text, ["", "1", "on", "a", "  "]) == text


def test_regex_characters_and_multi_line_secrets():
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBg+kq\n-----END KEY-----"
    text = f"dump: {key}\nthen the line alone: MIIEvQIBADANBg+kq (.*)"
    masked = mask(text, [key, "(.*)"])
    assert "MIIEvQIBADANBg+kq" not in masked and "(.*)" not in masked


def test_no_secrets_leaves_the_text_alone():
    assert mask("nothing here", []) == "nothing here"


@given(
    st.text(min_size=4, max_size=30).filter(lambda s: s.strip() == s and s not in MASK),
    st.text(max_size=50),
    st.text(max_size=50),
)
def test_a_planted_secret_never_survives(secret, before, after):
    assert secret not in mask(before + secret + after, [secret])
