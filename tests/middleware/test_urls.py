import pytest

from middleware.registry.urls import UnsafeURL, check_clone_url

ALLOWED = ("github.com",)


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/octo-org/hpc-code.git",
        "https://github.com/octo-org/hpc-code",
        "https://GitHub.com/o/r.git",
    ],
)
def test_https_on_allowed_hosts_is_accepted(url):
    assert check_clone_url(url, ALLOWED) == url


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://github.com/o/r.git", "https"),
        ("file:///etc/passwd", "no host"),
        ("https://user:pw@github.com/o/r.git", "credentials"),
        ("https://token@github.com/o/r.git", "credentials"),
        ("https://127.0.0.1/o/r.git", "IP address"),
        ("https://10.0.0.5/o/r.git", "IP address"),
        ("https://[::1]/o/r.git", "IP address"),
        ("https://169.254.169.254/latest/meta-data", "IP address"),
        ("https://localhost/o/r.git", "localhost"),
        ("https://gitlab.com/o/r.git", "not allowed"),
        ("https://github.com.evil.org/o/r.git", "not allowed"),
        ("https://github.com:8443/o/r.git", "port"),
        ("https://github.com/o/r.git?x=1", "look like"),
        ("https://github.com/--upload-pack=touch/x", None),
        ("https://github.com/o/r.git\n", "whitespace"),
        ("ext::sh -c touch% /tmp/pwned", "whitespace"),
        ("ssh://git@github.com/o/r.git", "credentials"),
    ],
)
def test_unsafe_urls_are_refused_with_a_reason(url, needle):
    with pytest.raises(UnsafeURL) as error:
        check_clone_url(url, ALLOWED)
    if needle:
        assert needle in str(error.value)


def test_insecure_sandbox_admits_only_loopback_http():
    assert check_clone_url("http://127.0.0.1:8765/o/r.git", ALLOWED, insecure_sandbox=True)
    with pytest.raises(UnsafeURL):
        check_clone_url("http://10.0.0.5/o/r.git", ALLOWED, insecure_sandbox=True)
    with pytest.raises(UnsafeURL):
        check_clone_url("http://127.0.0.1:8765/o/r.git", ALLOWED)
