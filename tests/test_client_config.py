"""ClientConfig: validated once at construction, and never shows the API key."""

from __future__ import annotations

import dataclasses

import pytest

from sigma_source.client import ClientConfig, SigmaClient, mask_key
from sigma_source.errors import ConfigError

KEY = "rk_test_51SecretKeyThatMustNeverBePrinted0123456789"


def test_defaults_point_at_stripe():
    config = ClientConfig(api_key=KEY)

    assert config.api_base == "https://api.stripe.com"
    assert config.files_base == "https://files.stripe.com"


def test_repr_and_str_leave_out_the_key():
    config = ClientConfig(api_key=KEY, stripe_account="acct_123")

    assert KEY not in repr(config)
    assert KEY not in str(config)
    assert "acct_123" in repr(config)


def test_client_repr_leaves_out_the_key():
    with SigmaClient(ClientConfig(api_key=KEY)) as client:
        assert KEY not in repr(client)
        assert KEY not in repr(vars(client))


def test_config_is_frozen():
    config = ClientConfig(api_key=KEY)

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.api_base = "https://elsewhere.example"  # type: ignore[misc]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:12111",
        "http://127.8.9.10:80",
        "http://localhost:8080",
        "http://LOCALHOST",
        "http://[::1]:12111",
        "https://api.stripe.com",
        "https://stripe-proxy.internal.example:8443/",
    ],
)
def test_accepted_base_urls(url):
    config = ClientConfig(api_key=KEY, api_base=url, files_base=url)

    assert config.api_base == url.rstrip("/")
    assert config.files_base == url.rstrip("/")


@pytest.mark.parametrize("setting", ["api_base", "files_base"])
@pytest.mark.parametrize(
    "url",
    [
        "http://api.stripe.com",
        "http://10.0.0.5:12111",
        "http://128.0.0.1",
        "http://localhost.evil.example",
        "http://[::2]",
    ],
)
def test_plain_http_to_a_non_loopback_host_is_refused_naming_the_setting(setting, url):
    with pytest.raises(
        ConfigError, match=rf"^{setting}: plain http:// is allowed only for loopback"
    ):
        ClientConfig(api_key=KEY, **{setting: url})


@pytest.mark.parametrize("url", ["ftp://api.stripe.com", "api.stripe.com", "", "https://"])
def test_a_base_url_that_is_not_https_is_refused(url):
    with pytest.raises(ConfigError, match=r"^api_base"):
        ClientConfig(api_key=KEY, api_base=url)


@pytest.mark.parametrize("key", ["", "   ", None])
def test_an_empty_api_key_is_refused(key):
    with pytest.raises(ConfigError, match="api_key is empty"):
        ClientConfig(api_key=key)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [KEY + "\n", f"Bearer {KEY}", KEY + "é"])
def test_a_malformed_api_key_is_refused_without_echoing_it(key):
    with pytest.raises(ConfigError, match="api_key contains whitespace") as caught:
        ClientConfig(api_key=key)

    assert KEY not in str(caught.value)


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("max_attempts", 0, "max_attempts must be at least 1"),
        ("max_attempts", 2.5, "max_attempts must be an integer"),
        ("download_attempts", 0, "download_attempts must be at least 1"),
        ("request_timeout", 0, "request_timeout must be above 0"),
        ("poll_interval", -1, "poll_interval must be above 0"),
        ("poll_timeout", -5, "poll_timeout must be at least 0"),
        ("backoff_factor", "fast", "backoff_factor must be a number of seconds"),
        ("max_retry_delay", True, "max_retry_delay must be a number of seconds"),
    ],
)
def test_numeric_settings_are_checked_by_name(setting, value, expected):
    with pytest.raises(ConfigError, match=expected):
        ClientConfig(api_key=KEY, **{setting: value})


def test_poll_max_interval_below_poll_interval_is_refused():
    with pytest.raises(ConfigError, match="poll_max_interval"):
        ClientConfig(api_key=KEY, poll_interval=5, poll_max_interval=1)


@pytest.mark.parametrize(
    ("key", "masked"),
    [
        ("sk_test_" + "x" * 20 + "WXYZ", "sk_test_****WXYZ"),
        ("rk_live_" + "y" * 30 + "1234", "rk_live_****1234"),
        ("custom-token-" + "z" * 20 + "9876", "cus****9876"),
        ("short", "****"),
    ],
)
def test_mask_key_keeps_only_prefix_and_last_four(key, masked):
    assert mask_key(key) == masked
