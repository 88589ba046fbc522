// A front-end client of the API, written only against the types that openapi-typescript
// generates from /docs/openapi.json ("api-schema"), with openapi-fetch, as a front-end developer
// would. tests/test_openapi.py type-checks it with `tsc --noEmit` (strict): a route, parameter,
// field or enum value that the document gets wrong or leaves out fails to compile here.

import createClient from "openapi-fetch";
import type { components, operations, paths } from "api-schema";

type Schemas = components["schemas"];

// Compile-time equality: assertType<Equal<A, B>>() fails to compile unless A and B are the same type.
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): T | void {}

// The enums of the spec and PRODUCT.md, exactly.
assertType<Equal<Schemas["InterviewQuestionStatus"], "NOT_STARTED" | "IN_PROGRESS" | "QUESTION_NOT_READY" | "SUCCESS">>();
assertType<Equal<Schemas["MessageRole"], "user" | "assistant">>();
assertType<Equal<Schemas["ReplyStatus"], "queued" | "streaming" | "idle">>();
assertType<Equal<Schemas["ReplyEventType"], "message" | "done" | "error">>();
assertType<Equal<Schemas["FinishReason"], "stop" | "length" | "stopped">>();
// Parameters where they really are: Last-Event-ID is a header; lastEventId and ticket are query.
assertType<Equal<NonNullable<operations["streamReply"]["parameters"]["header"]>, { "Last-Event-ID"?: string }>>();
assertType<
  Equal<NonNullable<operations["streamReply"]["parameters"]["query"]>, { lastEventId?: string; ticket?: string }>
>();
assertType<Equal<operations["authCallback"]["parameters"]["query"], { code: string; state: string }>>();
assertType<Equal<operations["answerQuestion"]["parameters"]["path"], { id: number }>>();
assertType<Equal<operations["getChat"]["parameters"]["path"], { chatId: number }>>();
// Every error is { message }.
assertType<Equal<Schemas["ErrorResponse"], { message: string }>>();

const api = createClient<paths>({ baseUrl: "http://127.0.0.1:8000" });
const auth = (token: string) => ({ Authentication: `Basic ${token}` });

function show(error: Schemas["ErrorResponse"] | undefined): void {
  if (error) console.error(error.message);
}

/** The events of a reply stream, as EventSource would dispatch them (one `ReplyEvent` each). */
async function* events(stream: ReadableStream<Uint8Array>): AsyncGenerator<Schemas["ReplyEvent"]> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event: Partial<Schemas["ReplyEvent"]> = {};
      for (const line of block.split("\n")) {
        const [field, ...rest] = line.split(":");
        const text = rest.join(":").replace(/^ /, "");
        if (field === "id") event.id = text;
        else if (field === "event") event.event = text as Schemas["ReplyEventType"];
        else if (field === "data") event.data = text;
      }
      if (event.data !== undefined && event.id !== undefined) {
        yield { id: event.id, event: event.event ?? "message", data: event.data };
      }
    }
  }
}

/** Reads a reply to its end; returns the text and the last event id (to resume with). */
async function readReply(stream: ReadableStream<Uint8Array>): Promise<{ text: string; lastEventId?: string }> {
  let text = "";
  let lastEventId: string | undefined;
  for await (const event of events(stream)) {
    lastEventId = event.id;
    const data = JSON.parse(event.data) as Schemas["ReplyEventData"];
    text += data.content;
    switch (event.event) {
      case "message":
        break;
      case "done": {
        const why: Schemas["FinishReason"] | undefined = data.finishReason;
        const tokens: number | undefined = data.usage?.completionTokens;
        console.log(why, tokens, data.stopped === true);
        return { text };
      }
      case "error":
        throw new Error(data.message ?? "the reply failed");
      default: {
        const unreachable: never = event.event;
        throw new Error(unreachable);
      }
    }
  }
  return lastEventId === undefined ? { text } : { text, lastEventId }; // interrupted: resume from lastEventId
}

// One call of every operation in the document: a mapped type over `operations`, so an operation
// missing here, or one here that the document lacks, is a compile error.
export const calls: { [K in keyof operations]: (token: string, chatId: number) => Promise<unknown> } = {
  async getAuthCode() {
    const { data, error } = await api.GET("/user/auth-code");
    show(error);
    return data && { goTo: data.loginUrl, state: data.state };
  },
  async authCallback() {
    const { data, error } = await api.GET("/user/auth-callback", {
      params: { query: { code: "the provider's code", state: "the state" } },
    });
    show(error);
    const token: string | undefined = data?.token;
    return token;
  },
  async logout(token) {
    const { data, error } = await api.POST("/user/logout", { headers: auth(token), params: { query: { all: true } } });
    show(error);
    return data?.message;
  },
  async exportUser(token) {
    const { data, error } = await api.GET("/user/export", { headers: auth(token) });
    show(error);
    if (!data) return undefined;
    const stored: number = data.user.storedBytes;
    const answers: (number | undefined)[] = data.interview.questions.map((q) => q.userAnswer);
    const texts: string[] = data.chats.flatMap((chat) => chat.messages.map((m) => `${m.role}: ${m.content}`));
    const until: number[] = data.sessions.map((s) => s.expiresAt);
    return { stored, answers, texts, until };
  },
  async deleteUser(token) {
    const { data, error } = await api.DELETE("/user", { headers: auth(token) });
    show(error);
    return data?.message;
  },
  async getUserInfo(token) {
    const { data, error } = await api.GET("/user/info", { headers: auth(token) });
    show(error);
    if (!data) return undefined;
    const id: number = data.userId;
    const created: Date = new Date(data.createdAt);
    const score: number | undefined = data.interviewScore;
    const done: boolean = data.interviewQuestionStatus === "SUCCESS" && data.doneInterview;
    return { id, name: data.username, created, score, done, skills: data.skillDescription };
  },
  async setSkillDescription(token) {
    const { data, error, response } = await api.POST("/user/skill-description", {
      headers: auth(token),
      body: { description: "Python, asyncio and Redis" },
    });
    if (response.status === 429 || response.status === 503) console.log(response.headers.get("Retry-After"));
    show(error);
    return data?.message;
  },
  async getQuestions(token) {
    const { data, error, response } = await api.GET("/user/questions", { headers: auth(token) });
    show(error);
    if (response.status === 202 || !data?.ready) return [];
    return (data.questions ?? []).map((q) => ({
      id: q.id,
      text: q.content,
      choices: q.choices.join(" / "),
      answered: q.userAnswer,
      right: q.correctAnswer,
      why: q.explanation,
    }));
  },
  async answerQuestion(token) {
    const { data, error } = await api.POST("/user/questions/{id}/answer", {
      headers: auth(token),
      params: { path: { id: 1 } },
      body: { answer: 0 },
    });
    show(error);
    return data?.message;
  },
  async createChat(token) {
    const { data, error } = await api.POST("/assistant/chat", { headers: auth(token) });
    show(error);
    const chatId: number | undefined = data?.chatId;
    return chatId;
  },
  async listChats(token) {
    const titles: string[] = [];
    let before: string | undefined;
    do {
      const { data, error } = await api.GET("/assistant/chat", {
        headers: auth(token),
        params: { query: before === undefined ? { limit: 20 } : { limit: 20, before } },
      });
      show(error);
      if (!data) break;
      for (const chat of data.chats) titles.push(`${chat.chatId}: ${chat.title} (${new Date(chat.updatedAt)})`);
      before = data.next;
    } while (before !== undefined);
    return titles;
  },
  async getChat(token, chatId) {
    const { data, error } = await api.GET("/assistant/chat/{chatId}", {
      headers: auth(token),
      params: { path: { chatId } },
    });
    show(error);
    if (!data) return undefined;
    const lines = data.messages.map((m) => `${m.role === "user" ? "you" : "assistant"}: ${m.content}`);
    const inFlight = data.reply.status !== "idle";
    return { lines, resumeFrom: inFlight ? data.reply.lastEventId : undefined, created: data.createdAt };
  },
  async deleteChat(token, chatId) {
    const { data, error } = await api.DELETE("/assistant/chat/{chatId}", {
      headers: auth(token),
      params: { path: { chatId } },
    });
    show(error);
    return data?.message;
  },
  async sendMessage(token, chatId) {
    const { data, error, response } = await api.POST("/assistant/chat/{chatId}", {
      headers: auth(token),
      params: { path: { chatId } },
      body: { prompt: "Explain asyncio" },
      parseAs: "stream",
    });
    if (error !== undefined || !data) {
      if (response.status === 409) console.log("a reply is still being written");
      return undefined;
    }
    return readReply(data);
  },
  async streamReply(token, chatId) {
    const { data } = await api.GET("/assistant/chat/{chatId}/stream", {
      headers: auth(token),
      params: { path: { chatId }, header: { "Last-Event-ID": "1-42" } },
      parseAs: "stream",
    });
    return data && readReply(data);
  },
  async createStreamTicket(token, chatId) {
    const { data, error } = await api.POST("/assistant/chat/{chatId}/stream-ticket", {
      headers: auth(token),
      params: { path: { chatId } },
    });
    show(error);
    if (!data) return undefined;
    // A browser's EventSource sends no header: the ticket goes in the URL, and EventSource resumes by itself.
    const query: NonNullable<operations["streamReply"]["parameters"]["query"]> = { ticket: data.ticket };
    const url = `/assistant/chat/${chatId}/stream?${new URLSearchParams(query)}`;
    const source = new EventSource(url);
    const done: Schemas["ReplyEventType"] = "done";
    source.addEventListener(done, () => source.close());
    source.onmessage = (message: MessageEvent<string>) => {
      const data = JSON.parse(message.data) as Schemas["ReplyEventData"];
      console.log(data.content);
    };
    return data.expiresIn * 1000;
  },
  async stopReply(token, chatId) {
    const { data, error } = await api.POST("/assistant/chat/{chatId}/stop", {
      headers: auth(token),
      params: { path: { chatId } },
    });
    show(error);
    return data?.message;
  },
  async getHealth() {
    const { data } = await api.GET("/health");
    return data?.status === "ok";
  },
  async getReady() {
    const { data, error } = await api.GET("/ready");
    show(error);
    return data?.status === "ready";
  },
  async getMetrics() {
    const { data } = await api.GET("/metrics", { parseAs: "text" });
    return data;
  },
  async devLoginPage() {
    const { data } = await api.GET("/dev/login", {
      params: { query: { state: "s", code_challenge: "c", redirect_uri: "http://127.0.0.1:8000/" } },
      parseAs: "text",
    });
    return data;
  },
  async devLogin() {
    const { response } = await api.POST("/dev/login", {
      body: { username: "ada", state: "s", code_challenge: "c", redirect_uri: "http://127.0.0.1:8000/" },
      bodySerializer: (body) => new URLSearchParams(body),
      redirect: "manual",
    });
    return response.headers.get("Location");
  },
  async devCallbackPage() {
    const { data } = await api.GET("/dev/callback", { parseAs: "text" });
    return data;
  },
};
