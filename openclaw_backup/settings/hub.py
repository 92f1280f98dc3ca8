"""The Hub's settings as its client libraries would read them: the token ``huggingface_hub`` would
send, its endpoint, its offline mode, ``httpx2``'s proxies and ``httpcore2``'s CA bundle — read here,
so that a Hub store's reads need none of those libraries (:class:`~..backends.options.HubEnvironment`).
Part of :mod:`openclaw_backup.settings`.

The token, when none of the tool's variables gives one, is the one ``huggingface_hub.get_token()``
would find: ``HUGGING_FACE_HUB_TOKEN``, then the stored ``hf auth login`` token (``HF_TOKEN_PATH``,
else ``$HF_HOME/token``, else ``$XDG_CACHE_HOME/huggingface/token``, else
``~/.cache/huggingface/token``), none when ``HF_HUB_DISABLE_IMPLICIT_TOKEN`` is on. Where only the
library can tell — a browser (OAuth) login it may have to refresh, a CI's OIDC exchange
(``HF_OIDC_RESOURCE``), the staging Hub, a notebook (Colab's secrets), a token file it cannot read —
the token is left to it (``token_settled=False``). The library's own variables are read from the
process's environment, as the library reads them (not from the legacy script's env files).
"""

from __future__ import annotations

import builtins
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from ..backends.options import HubEnvironment

DEFAULT_ENDPOINT = "https://huggingface.co"
STAGING_ENDPOINT = "https://hub-ci.huggingface.co"
_PROXIES = ("http_proxy", "https_proxy", "all_proxy")


def _on(value: str | None) -> bool:
    """A boolean variable as huggingface_hub reads it."""
    return value is not None and value.upper() in ("1", "ON", "YES", "TRUE")


def _clean(token: str | None) -> str | None:
    return (token.replace("\r", "").replace("\n", "").strip() or None) if token is not None else None


def _expand(path: str) -> str:
    return os.path.expandvars(os.path.expanduser(path))


def token_path(env: Mapping[str, str]) -> Path:
    """Where ``hf auth login`` stores the token (``huggingface_hub.constants.HF_TOKEN_PATH``)."""
    cache = env.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    home = _expand(env.get("HF_HOME", os.path.join(cache, "huggingface")))
    return Path(_expand(env.get("HF_TOKEN_PATH", os.path.join(home, "token"))))


def _refreshable(path: Path, token: str) -> bool:
    """Whether ``token`` is a browser login's, which the library refreshes when close to expiry."""
    stored = path.parent / "stored_tokens"
    if not stored.exists():
        return False
    import configparser  # only with a stored login (some 3 ms)

    config = configparser.ConfigParser(interpolation=None)
    try:
        config.read(stored, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return False  # the library ignores a file it cannot parse
    return any(
        config.get(name, "hf_token", fallback=None) == token and config.has_option(name, "refresh_token")
        for name in config.sections()
    )


def implicit_token(env: Mapping[str, str]) -> tuple[str | None, bool]:
    """The token huggingface_hub would send when it is given none, and whether that is settled
    (False: only the library can tell; it is then left to find it)."""
    if _on(env.get("HF_HUB_DISABLE_IMPLICIT_TOKEN")):
        return None, True
    if env.get("HF_OIDC_RESOURCE") or _on(env.get("HUGGINGFACE_CO_STAGING")) or hasattr(builtins, "get_ipython"):
        return None, False
    from_env = _clean(env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN"))
    if from_env is not None:
        return from_env, True
    path = token_path(env)
    try:
        stored = _clean(path.read_text())
    except FileNotFoundError:
        return None, True
    except (OSError, UnicodeDecodeError):
        return None, False
    if stored is None:
        return None, True
    if _refreshable(path, stored):
        return None, False
    return stored, True


def hub_endpoint(env: Mapping[str, str], process_env: Mapping[str, str]) -> str:
    """``HF_ENDPOINT``, else the library's default (the staging Hub's under ``HUGGINGFACE_CO_STAGING``)."""
    return env.get("HF_ENDPOINT") or (
        STAGING_ENDPOINT if _on(process_env.get("HUGGINGFACE_CO_STAGING")) else DEFAULT_ENDPOINT
    )


def hub_environment(process_env: Mapping[str, str], *, token_settled: bool) -> HubEnvironment:
    """What the libraries read from ``process_env`` for a Hub store's reads."""
    proxied = sys.platform in ("win32", "darwin") or any(
        value for name, value in process_env.items() if name.lower() in _PROXIES
    )  # Windows and macOS: the system's proxy settings too (urllib's getproxies, as httpx2 reads them)
    return HubEnvironment(
        token_settled=token_settled,
        offline=_on(process_env.get("HF_HUB_OFFLINE") or process_env.get("TRANSFORMERS_OFFLINE")),
        proxied=proxied,
        ssl_cert_file=process_env.get("SSL_CERT_FILE") or None,
        ssl_cert_dir=process_env.get("SSL_CERT_DIR") or None,
    )
