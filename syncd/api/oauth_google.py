"""Google Calendar connect from the mentor page: the OAuth 2 web flow with state and PKCE.

`GET /m/{token}/google/connect` sends the browser to Google's consent page. `state` is signed
with the secret key and names the mentor and a fresh nonce; the PKCE verifier is derived from
the nonce with the secret key (so nothing is stored server-side, and the verifier never travels
through the browser); a short-lived HttpOnly cookie holds the nonce and the mentor's link, so
the callback only completes in the browser that started it and can return to the page.

`GET /oauth/google/callback` checks all of that, exchanges the code at `[google] token_uri`
(with the verifier), and hands the grant to `syncd.calendars.connect_google`, which lists the
calendars live and stores the token encrypted. The client comes from `[google]
client_secrets_file` (Google's JSON, "web" or "installed"); `[google] auth_uri` / `token_uri`
override its endpoints.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from google.oauth2.credentials import Credentials

from connectors.google_auth import GOOGLE_TOKEN_URI, SCOPES
from syncd import calendars, links
from syncd.api.auth import AuthError
from syncd.api.context import ApiContext, get_context
from syncd.api.pages import mentor_claims
from syncd.config import Config
from syncd.errors import ConfigError, UserError
from syncd.secrets import Secret

log = logging.getLogger(__name__)

GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/auth"
CALLBACK_PATH = "/oauth/google/callback"
COOKIE = "syncd_google_oauth"
STATE_TTL = timedelta(minutes=10)
TOKEN_TIMEOUT_S = 15.0
_STATE_PURPOSE = b"syncd google oauth state v1"
_PKCE_PURPOSE = b"syncd google pkce verifier v1"


@dataclass(frozen=True)
class GoogleClient:
    client_id: str
    client_secret: Secret
    auth_uri: str
    token_uri: str


def google_client(config: Config) -> GoogleClient | None:
    """The configured OAuth client; None when Google connect is not set up."""
    path = config.require_type("google", "client_secrets_file", str, None)
    if not path:
        return None
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        info: dict[str, Any] = raw.get("web") or raw["installed"]
        client_id, client_secret = str(info["client_id"]), str(info["client_secret"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(
            f"[google] client_secrets_file {path}: not a readable Google client JSON"
        ) from None
    return GoogleClient(
        client_id=client_id,
        client_secret=Secret(client_secret),
        auth_uri=str(
            config.get("google", "auth_uri", None) or info.get("auth_uri") or GOOGLE_AUTH_URI
        ),
        token_uri=str(
            config.get("google", "token_uri", None) or info.get("token_uri") or GOOGLE_TOKEN_URI
        ),
    )


# -- state and PKCE -----------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _mac(secret: bytes, purpose: bytes, text: str) -> bytes:
    return hmac.new(secret, purpose + b"\0" + text.encode("utf-8"), hashlib.sha256).digest()


def sign_state(secret: bytes, mentor_id: str, nonce: str, expires: datetime) -> str:
    payload = _b64(f"{mentor_id}:{nonce}:{int(expires.timestamp())}".encode())
    return f"{payload}.{_b64(_mac(secret, _STATE_PURPOSE, payload))}"


def verify_state(secret: bytes, state: str, now: datetime) -> tuple[str, str]:
    """(mentor id, nonce) of a genuine, unexpired state; AuthError otherwise."""
    payload, _, mac = state.partition(".")
    expected = _b64(_mac(secret, _STATE_PURPOSE, payload))
    if not mac or not hmac.compare_digest(mac.encode("ascii", "replace"), expected.encode()):
        raise _bad_state("the Google sign-in could not be verified; start again from your page")
    try:
        padded = payload + "=" * (-len(payload) % 4)
        mentor_id, nonce, epoch = base64.urlsafe_b64decode(padded).decode("utf-8").split(":")
        expires = datetime.fromtimestamp(int(epoch), UTC)
    except (ValueError, OverflowError):
        raise _bad_state("the Google sign-in state is malformed") from None
    if expires <= now:
        raise _bad_state("the Google sign-in took too long; start again from your page")
    return mentor_id, nonce


def _bad_state(message: str) -> AuthError:
    return AuthError(400, "invalid_state", message)


def code_verifier(secret: bytes, nonce: str) -> str:
    """43 url-safe characters (RFC 7636's minimum), reproducible only with the secret key."""
    return _b64(_mac(secret, _PKCE_PURPOSE, nonce))


def code_challenge(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


# -- the two routes -----------------------------------------------------------------------


def _redirect_uri(context: ApiContext) -> str:
    return context.settings.public_url.rstrip("/") + CALLBACK_PATH


def _require_client(context: ApiContext) -> GoogleClient:
    client = google_client(context.settings.config)
    if client is None:
        raise UserError("Google Calendar is not set up on this server; ask the admin")
    return client


def _secret(context: ApiContext) -> bytes:
    secret = context.settings.secret_key
    if secret is None:
        raise AuthError(401, "unauthorized", "page links are disabled")
    return secret


def start(request: Request, token: str) -> RedirectResponse:
    """Send the mentor's browser to Google's consent page."""
    context = get_context(request)
    claims = mentor_claims(context, token)
    client = _require_client(context)
    secret = _secret(context)
    nonce = secrets.token_urlsafe(16)
    expires = context.settings.clock() + STATE_TTL
    params = {
        "client_id": client.client_id,
        "redirect_uri": _redirect_uri(context),
        "response_type": "code",
        "scope": " ".join(SCOPES),
        "state": sign_state(secret, claims.subject_id, nonce, expires),
        "code_challenge": code_challenge(code_verifier(secret, nonce)),
        "code_challenge_method": "S256",
        # A refresh token every time, even when the account granted access before.
        "access_type": "offline",
        "prompt": "consent",
    }
    response = RedirectResponse(f"{client.auth_uri}?{urlencode(params)}", status_code=303)
    response.set_cookie(
        COOKIE,
        f"{nonce}.{token}",
        max_age=int(STATE_TTL.total_seconds()),
        path=CALLBACK_PATH,
        httponly=True,
        samesite="lax",  # sent on the top-level redirect back from Google
        secure=context.settings.public_url.startswith("https://"),
    )
    return response


def callback(
    request: Request, state: str = "", code: str | None = None, error: str | None = None
) -> RedirectResponse:
    """Google sent the browser back: check state and cookie, exchange the code, connect."""
    context = get_context(request)
    mentor_id, nonce = verify_state(_secret(context), state, context.settings.clock())
    link = _link_from_cookie(context, request.cookies.get(COOKIE, ""), mentor_id, nonce)
    outcome = "denied" if error or not code else _connect(context, mentor_id, nonce, code or "")
    page = links.page_url(context.settings.public_url, "mentor", link)
    response = RedirectResponse(f"{page}?google={outcome}", status_code=303)
    response.delete_cookie(COOKIE, path=CALLBACK_PATH)
    return response


def _link_from_cookie(context: ApiContext, cookie: str, mentor_id: str, nonce: str) -> str:
    """The mentor link stored when the flow started, if this browser started it."""
    cookie_nonce, _, link = cookie.partition(".")
    if not cookie_nonce or not hmac.compare_digest(cookie_nonce.encode(), nonce.encode()):
        raise _bad_state("this Google sign-in was not started in this browser; start again")
    if mentor_claims(context, link).subject_id != mentor_id:
        raise _bad_state("this Google sign-in belongs to another mentor")
    return link


def _connect(context: ApiContext, mentor_id: str, nonce: str, code: str) -> str:
    client = _require_client(context)
    try:
        credentials = exchange_code(client, code, code_verifier(_secret(context), nonce), context)
        connected = calendars.connect_google(
            context.db, context.settings.config, mentor_id, credentials
        )
    except UserError as failure:
        # Messages from the token endpoint and the calendar list carry no secrets.
        log.warning("google connect for %s failed: %s", mentor_id, failure)
        return "failed"
    log.info("google account %s connected for %s", connected.account_id, mentor_id)
    return "connected"


def exchange_code(
    client: GoogleClient, code: str, verifier: str, context: ApiContext
) -> Credentials:
    """Trade the one-time code (plus the PKCE verifier) for an access and a refresh token."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": _redirect_uri(context),
        "client_id": client.client_id,
        "client_secret": client.client_secret.reveal(),
        "code_verifier": verifier,
    }
    try:
        answer = httpx.post(client.token_uri, data=form, timeout=TOKEN_TIMEOUT_S)
    except httpx.HTTPError as failure:
        raise UserError(f"cannot reach Google's token endpoint: {type(failure).__name__}") from None
    body = _json(answer)
    if answer.status_code != 200 or not body.get("refresh_token"):
        reason = body.get("error") or f"HTTP {answer.status_code}"
        raise UserError(f"Google refused the sign-in ({reason}); start again")
    return Credentials(  # type: ignore[no-untyped-call]
        token=body.get("access_token"),
        refresh_token=body["refresh_token"],
        token_uri=client.token_uri,
        client_id=client.client_id,
        client_secret=client.client_secret.reveal(),
        scopes=str(body.get("scope") or " ".join(SCOPES)).split(),
    )


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def install(app: FastAPI) -> None:
    app.add_api_route("/m/{token}/google/connect", start, methods=["GET"], include_in_schema=False)
    app.add_api_route(CALLBACK_PATH, callback, methods=["GET"], include_in_schema=False)
