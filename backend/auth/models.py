"""The answers of /user/auth-code, /user/auth-callback and /user/info (in the OpenAPI document as
named schemas)."""

from __future__ import annotations

from pydantic import Field

from backend.apidoc import Answer, Count, Id, Millis
from backend.interview.models import InterviewQuestionStatus


class AuthResponse(Answer):
    loginUrl: str = Field(description="The login provider's page: send the user there.")
    state: str = Field(description="Comes back with the code to /user/auth-callback; good for one login, 10 minutes.")


class AuthCallbackResponse(Answer):
    token: str = Field(description="Send it as `Authentication: Basic <token>` with every authenticated request.")


class UserInfoResponse(Answer):
    userId: Id
    username: str
    createdAt: Millis = Field(description="When the user first logged in, Unix time in milliseconds.")
    skillDescription: str = Field(description="The last skill description sent (empty before the first).")
    doneInterview: bool = Field(description="True exactly when `interviewQuestionStatus` is SUCCESS.")
    interviewQuestionStatus: InterviewQuestionStatus
    interviewScore: Count | None = Field(None, description="Questions answered right; only after SUCCESS.")
