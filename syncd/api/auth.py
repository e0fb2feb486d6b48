"""Who is calling: an API key (admin, app, read-only) or a signed page link (mentor, student).

Both arrive as `Authorization: Bearer <token>`. API keys are compared by SHA-256 in constant
time; link tokens are verified with the secret key. Authorisation rules live here as small
functions the routes call, so every rule has one place and one test.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from syncd import links
from syncd.api.context import Context
from syncd.api.settings import ApiSettings

Role = Literal["admin", "app", "read-only", "mentor", "student"]
CANCEL_BY: dict[Role, tuple[str, ...]] = {
    "admin": ("admin", "mentor", "student"),
    "app": ("student", "mentor"),
    "mentor": ("mentor",),
    "student": ("student",),
    "read-only": (),
}

bearer = HTTPBearer(auto_error=False, description="An API key or a signed page-link token.")


class AuthError(Exception):
    """401 (who are you?) or 403 (not allowed); turned into a JSON error at the edge."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Principal:
    role: Role
    name: str  # the key's name, or the mentor/student id of a link: safe to log
    subject_id: str | None = None  # set for mentor and student links

    @property
    def is_key(self) -> bool:
        return self.subject_id is None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def authenticate(settings: ApiSettings, token: str | None) -> Principal:
    if not token:
        raise AuthError(401, "unauthorized", "send Authorization: Bearer <API key or link token>")
    if token.startswith(links.TOKEN_PREFIX):
        return _from_link(settings, token)
    digest = _sha256(token)
    for key in settings.api_keys:
        if hmac.compare_digest(digest, key.key_sha256):
            return Principal(role=key.role, name=key.name)
    raise AuthError(401, "unauthorized", "unknown API key")


def _from_link(settings: ApiSettings, token: str) -> Principal:
    if settings.secret_key is None:
        raise AuthError(401, "unauthorized", "page links are disabled: no secret key is configured")
    try:
        claims = links.verify_link(settings.secret_key, token, now=settings.clock())
    except links.InvalidLink as error:
        raise AuthError(401, "unauthorized", str(error)) from None
    return Principal(role=claims.kind, name=claims.subject_id, subject_id=claims.subject_id)


def current_principal(
    context: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    return authenticate(context.settings, credentials.credentials if credentials else None)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


# -- rules ------------------------------------------------------------------------------------


def forbid(message: str) -> AuthError:
    return AuthError(403, "forbidden", message)


def require_key_role(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        raise forbid(f"this needs one of the roles: {', '.join(roles)}")


def require_writer(principal: Principal) -> None:
    if principal.role == "read-only":
        raise forbid("a read-only key cannot change anything")


def may_see_student(principal: Principal, student_id: str) -> bool:
    if principal.role == "student":
        return principal.subject_id == student_id
    return principal.role in ("admin", "app", "read-only")


def may_see_mentor(principal: Principal, mentor_id: str) -> bool:
    if principal.role == "mentor":
        return principal.subject_id == mentor_id
    return principal.role in ("admin", "app", "read-only")


def may_see_booking(principal: Principal, student_id: str, mentor_id: str) -> bool:
    if principal.role == "student":
        return principal.subject_id == student_id
    if principal.role == "mentor":
        return principal.subject_id == mentor_id
    return True


def require_student_access(principal: Principal, student_id: str) -> None:
    if not may_see_student(principal, student_id):
        raise forbid("this link or key may not act for that student")


def require_mentor_access(principal: Principal, mentor_id: str) -> None:
    if not may_see_mentor(principal, mentor_id):
        raise forbid("this link or key may not act for that mentor")


def require_book_for(principal: Principal, student_id: str) -> None:
    """Admin and app book for any student; a student link only for itself."""
    require_writer(principal)
    if principal.role == "mentor":
        raise forbid("a mentor link cannot book sessions")
    require_student_access(principal, student_id)


def cancel_by(principal: Principal, asked: str | None) -> str:
    """Who the cancellation is recorded as (it decides the refund); refuses impersonation."""
    allowed = CANCEL_BY[principal.role]
    if not allowed:
        raise forbid("a read-only key cannot change anything")
    chosen = asked or allowed[0]
    if chosen not in allowed:
        raise forbid(f"this link or key may cancel only as: {', '.join(allowed)}")
    return chosen


def require_mentor_writer(principal: Principal, mentor_id: str) -> None:
    """Admin and app keys change any mentor's settings; a mentor link only its own."""
    require_writer(principal)
    require_mentor_access(principal, mentor_id)
