"""OAuth 2.0 for Google Calendar: loading stored grants and running the installed-app flow.

The refresh token is the long-lived secret. Callers store `credentials_to_json(...)` encrypted
and never log it; nothing here logs tokens or client secrets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from google.auth.exceptions import RefreshError
from google.oauth2.credentials import Credentials
from google_auth_oauthlib.flow import InstalledAppFlow

from connectors.base import AuthError

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"

# Minimal scopes: reading events (incremental pull and freeBusy.query) and writing syncd's own
# booking events. `calendar.freebusy` alone would do for live checks only; syncd also pulls.
SCOPES: tuple[str, ...] = (
    "https://www.googleapis.com/auth/calendar.readonly",
    "https://www.googleapis.com/auth/calendar.events",
)

_REQUIRED_FIELDS = ("client_id", "client_secret", "refresh_token")
_RECONNECT_HINT = "the mentor must reconnect the Google calendar (syncd calendar add ... google)"


def credentials_from_authorized_user_info(
    info: Mapping[str, Any], token_uri: str | None = None
) -> Credentials:
    """Credentials from an authorized-user dict (the JSON google-auth writes).

    google-auth always puts Google's own token endpoint in; the configured `token_uri` wins,
    else the one recorded in `info`, else Google's.
    """
    missing = [name for name in _REQUIRED_FIELDS if not info.get(name)]
    if missing:
        raise AuthError(f"authorized-user info lacks {', '.join(missing)}; {_RECONNECT_HINT}")
    # google-auth is only partly annotated; its Credentials class is typed, its factories not.
    credentials = Credentials.from_authorized_user_info(dict(info))  # type: ignore[no-untyped-call]
    chosen = token_uri or info.get("token_uri") or GOOGLE_TOKEN_URI
    return cast(Credentials, credentials.with_token_uri(chosen))


def load_token_file(path: str | Path, token_uri: str | None = None) -> Credentials:
    """Credentials from an authorized-user JSON file (`--token-file`)."""
    try:
        info = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AuthError(f"cannot read Google token file {path}: {exc}") from exc
    if not isinstance(info, dict):
        raise AuthError(f"Google token file {path} is not a JSON object")
    return credentials_from_authorized_user_info(info, token_uri)


def credentials_to_json(credentials: Credentials) -> str:
    """The authorized-user JSON of `credentials` (contains secrets: encrypt before storing)."""
    return str(credentials.to_json())  # type: ignore[no-untyped-call]


def run_installed_app_flow(
    client_secrets_file: str | Path,
    scopes: Sequence[str] = SCOPES,
    *,
    open_browser: bool = False,
    port: int = 0,
    host: str = "127.0.0.1",
    timeout_seconds: int | None = 600,
) -> Credentials:
    """Run the installed-app flow with a loopback redirect and return the granted credentials.

    Prints the consent URL, so it works on a headless server: open the URL anywhere, and the
    browser's redirect must reach `host:port` (an SSH tunnel does it). `port=0` picks a free one.
    """
    flow = InstalledAppFlow.from_client_secrets_file(str(client_secrets_file), scopes=list(scopes))
    credentials = flow.run_local_server(
        host=host,
        port=port,
        open_browser=open_browser,
        authorization_prompt_message="Open this URL in a browser to grant syncd access:\n{url}",
        success_message="syncd is connected; you can close this window.",
        timeout_seconds=timeout_seconds,
        # Offline access with a forced consent screen, so Google returns a refresh token even
        # when the account granted access before.
        access_type="offline",
        prompt="consent",
    )
    if not credentials.refresh_token:
        raise AuthError("Google returned no refresh token; revoke syncd's access and retry")
    return cast(Credentials, credentials)


def is_revoked_grant(error: RefreshError) -> bool:
    """Whether a refresh failed because the grant is revoked or expired (`invalid_grant`)."""
    details = error.args[1] if len(error.args) > 1 else None
    if isinstance(details, Mapping):
        return details.get("error") == "invalid_grant"
    return bool(error.args) and "invalid_grant" in str(error.args[0])


def auth_error_from_refresh(error: RefreshError) -> AuthError:
    """An AuthError for a failed refresh, with a message fit for an admin and free of secrets."""
    if is_revoked_grant(error):
        return AuthError(f"Google refused the refresh token (invalid_grant); {_RECONNECT_HINT}")
    return AuthError(f"Google token refresh failed; {_RECONNECT_HINT} if this persists")
