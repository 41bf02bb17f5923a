"""Mask secrets in URLs before they are stored, logged or shown.

One rule everywhere (runs.data_source, run params, retry warnings, ``inspect_trades.py
show``, the HTML report, error lines): a URL's password is replaced by ``***`` (a user
name without a password is masked too, since API keys travel there), and so is the
value of every query parameter whose name looks like a credential (key, secret,
token, signature, password, passphrase, apikey, auth, credential; any case).

    >>> mask_url("http://user:password@host:8080/api?symbol=BTC&apiKey=abc")
    'http://user:***@host:8080/api?symbol=BTC&apiKey=***'
"""
from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_SECRET_NAME = re.compile(r"key|secret|token|signature|^sig$|passw|passphrase|pwd|auth|credential|session",
                          re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
_QUERY_PAIR = re.compile(r"([^&=;]*)=([^&;]*)")


def is_secret_name(name: str) -> bool:
    """True when a parameter name looks like a credential (``apiKey``, ``X-Signature``, ``token``)."""
    return bool(_SECRET_NAME.search(name))


def mask_url(url: str) -> str:
    """The URL with its userinfo secret and credential-like query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 host: mask anything between '://' and '@' by hand
        return re.sub(r"(://)[^/@]*@", rf"\g<1>{MASK}@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if sep and user else f"{MASK}@{host}"
    query = _QUERY_PAIR.sub(lambda m: f"{m.group(1)}={MASK}" if is_secret_name(m.group(1)) else m.group(0),
                            parts.query)
    fragment = _QUERY_PAIR.sub(lambda m: f"{m.group(1)}={MASK}" if is_secret_name(m.group(1)) else m.group(0),
                               parts.fragment)
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def mask_text(text: str) -> str:
    """Every URL inside free text (an exception message, a log line) masked with :func:`mask_url`."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)


def mask_secrets(value: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings) with every URL in it masked, and the
    values of credential-named keys (``{"api_key": ...}``) replaced by ``***``."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and is_secret_name(k) and isinstance(v, str) and v
                    else mask_secrets(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask_secrets(v) for v in value)
    return value


class SecretMaskingFilter(logging.Filter):
    """A logging filter that masks URLs in every record's final message (ours and libraries')."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install_log_masking() -> None:
    """Attach :class:`SecretMaskingFilter` to every handler of the root logger (call after basicConfig)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, SecretMaskingFilter) for f in handler.filters):
            handler.addFilter(SecretMaskingFilter())
