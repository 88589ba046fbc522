"""The answers of /user/auth-code, /user/auth-callback and /user/info (in the OpenAPI document as
named schemas)."""

from __future__ import annotations

from pydantic import Field

from backend.apidoc import Answer, Count, Id, Millis
from backend.assistant.models import ChatMessage
from backend.interview.models import InterviewQuestionStatus, Question


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


class ExportedUser(Answer):
    userId: Id
    username: str
    createdAt: Millis = Field(description="When the user first logged in, Unix time in milliseconds.")
    provider: str = Field(description="The login provider (`dev`, `github` or `oidc`).")
    identity: str | None = Field(None, description="The provider identity: provider, issuer (oidc) and subject.")
    storedBytes: Count = Field(
        description="Bytes of the prompts and replies kept, as stored (UTF-8 JSON of each message: its text, "
        "role and time), counted against `USER_STORAGE_MAX_BYTES`."
    )


class ExportedInterview(Answer):
    skillDescription: str
    status: InterviewQuestionStatus
    questions: list[Question] = Field(description="With `userAnswer` where answered; the answers once SUCCESS.")
    score: Count | None = Field(None, description="Questions answered right; only after SUCCESS.")


class ExportedChat(Answer):
    chatId: Id
    title: str
    createdAt: Millis
    updatedAt: Millis
    messages: list[ChatMessage] = Field(description="Oldest first.")


class ExportedSession(Answer):
    expiresAt: Millis = Field(description="When the session ends, Unix time in milliseconds.")


class UserExport(Answer):
    """Everything stored about the user (GET /user/export)."""

    user: ExportedUser
    interview: ExportedInterview
    chats: list[ExportedChat] = Field(description="Most recently updated first.")
    sessions: list[ExportedSession] = Field(description="The live sessions (logins); tokens are never stored.")
