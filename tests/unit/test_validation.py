"""Text from people: what looks empty is empty, what is not text is refused."""
import pytest

from portal.validation import InvalidText, clean_filename, clean_text


@pytest.mark.parametrize("invisible", ["\u200b" * 130, " \u3164 ", "\u2800", "\ufeff\u200d",
                                       "\u0301\u0301", "\u00a0\u2003"])
def test_text_that_shows_nothing_is_empty_so_a_required_field_says_so(invisible):
    # a licence of 130 zero-width spaces was accepted: people consented to nothing visible
    assert clean_text(invisible, "licence", max_length=200, name=False) == ""


@pytest.mark.parametrize("text", ["Zoë", "🎻 ناديا", "e\u0301", "👨\u200d👩\u200d👧",
                                  "O'Brien-Łukasz", "李小龍"])
def test_real_names_are_kept(text):
    assert clean_text(text, "name", max_length=120) == text


@pytest.mark.parametrize("bad", ["\ufffe", "Ana\uffff", "\ufdd0", "Ana\ufffd", "\U0001fffe"])
def test_noncharacters_and_replacement_characters_are_refused_with_a_reason(bad):
    with pytest.raises(InvalidText) as refused:
        clean_text(bad, "name", max_length=120)
    assert refused.value.field == "name" and "type it again" in refused.value.message


def test_a_file_name_with_unreadable_characters_is_kept_readable_not_refused():
    # the file name is only for people to read: a phone's odd encoding must not refuse a take
    assert clean_filename("take\ufffd1\uffff.mp4") == "take_1_.mp4"
