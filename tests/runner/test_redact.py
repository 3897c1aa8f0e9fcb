import logging

from ci_runner.redact import RedactingFilter, Redactor


def test_redacts_every_registered_value_longest_first():
    redactor = Redactor()
    redactor.add("secret-value")
    redactor.add("secret-value-and-more")
    assert redactor("a secret-value-and-more b secret-value") == "a *** b ***"


def test_short_or_empty_values_are_not_registered():
    redactor = Redactor()
    assert not redactor.add("")
    assert not redactor.add(None)
    assert not redactor.add("ab")
    assert redactor("ab") == "ab"


def test_log_records_are_redacted_including_arguments_and_tracebacks(caplog):
    redactor = Redactor()
    redactor.add("hunter2-secret")
    logger = logging.getLogger("test.redact")
    handler_filter = RedactingFilter(redactor)
    record = logger.makeRecord("n", logging.ERROR, "f", 1, "token %s", ("hunter2-secret",), None)
    handler_filter.filter(record)
    assert record.getMessage() == "token ***"
    try:
        raise ValueError("hunter2-secret")
    except ValueError:
        import sys

        record = logger.makeRecord("n", logging.ERROR, "f", 1, "x", (), sys.exc_info())
    handler_filter.filter(record)
    assert "hunter2-secret" not in (record.exc_text or "")


def test_userinfo_is_split_from_urls_and_masked_in_any_text():
    from ci_runner.redact import public_url, split_userinfo

    url = "https://gitlab-ci-token:glcbt-64_abc%2Fdef@gitlab.example.org/g/p.git"
    clean = "https://gitlab.example.org/g/p.git"
    assert split_userinfo(url) == (clean, "gitlab-ci-token", "glcbt-64_abc/def")
    assert public_url("git@github.com:o/r.git") == "git@github.com:o/r.git"  # scp syntax has no userinfo
    assert split_userinfo("https://h/r.git") == ("https://h/r.git", None, None)
    redactor = Redactor()
    assert redactor(f"cloning {url} now") == "cloning https://***@gitlab.example.org/g/p.git now"
    assert redactor("ssh://git@host/r and mail me@example.org") == "ssh://***@host/r and mail me@example.org"
