// The web playground: a client of the public API only, as documented at /docs. Plain script, no
// build step. Replies are read two ways, both as a front-end would: the POST that sends a prompt
// with fetch and a stream reader (EventSource cannot POST), and a resumed reply with the browser's
// own EventSource and a stream ticket (it can send no header), which reconnects by itself with
// Last-Event-ID.
'use strict';

(() => {
  const TOKEN = 'playground.token';
  const LOGIN_STATE = 'playground.loginState';
  const OPEN_CHAT = 'playground.chatId';
  const PARTIAL = (chatId) => `playground.partial.${chatId}`; // {id, text} of a reply being written
  const POLL_MS = 500;
  const RECOVER_MS = [1000, 2000, 4000, 8000, 8000];

  // Counters for the browser test and for a curious developer's console.
  const stats = { duplicates: 0, fetchStreams: 0, eventSources: 0, recoveries: 0 };
  window.playgroundStats = stats;

  const $ = (id) => document.getElementById(id);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const state = { chatId: null, view: null, polling: 0, questionCount: 0 };

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // ---- messages to the user ------------------------------------------------------------------

  function showError(message) {
    $('notice-text').textContent = message;
    $('notice').hidden = false;
  }

  function clearError() {
    $('notice').hidden = true;
    $('notice-text').textContent = '';
  }

  // Run an action from the UI; an error is shown, never swallowed.
  function act(fn) {
    return async (...args) => {
      try {
        await fn(...args);
      } catch (error) {
        showError(error instanceof ApiError ? error.message : `Something went wrong: ${error.message}`);
      }
    };
  }

  // ---- the API ---------------------------------------------------------------------------------

  function authHeaders() {
    const token = sessionStorage.getItem(TOKEN);
    return token ? { Authentication: `Basic ${token}` } : {};
  }

  async function check(response) {
    const type = response.headers.get('Content-Type') || '';
    const data = type.startsWith('application/json') ? await response.json() : null;
    if (response.status >= 400) {
      const message = (data && data.message) || `The request failed (${response.status}).`;
      if (response.status === 401 && sessionStorage.getItem(TOKEN)) loggedOut(message);
      throw new ApiError(response.status, message);
    }
    return { status: response.status, data };
  }

  async function api(method, path, body) {
    const init = { method, headers: authHeaders() };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiError(0, 'The server cannot be reached. Check the connection and try again.');
    }
    return check(response);
  }

  // ---- login -----------------------------------------------------------------------------------

  async function startLogin() {
    const { data } = await api('GET', '/user/auth-code');
    sessionStorage.setItem(LOGIN_STATE, data.state);
    location.assign(data.loginUrl);
  }

  // The provider sent the browser back here with ?code&state (or ?error).
  async function finishLogin(params) {
    const expected = sessionStorage.getItem(LOGIN_STATE);
    sessionStorage.removeItem(LOGIN_STATE);
    history.replaceState(null, '', location.pathname); // the code is single-use: keep it out of history
    if (params.get('error')) {
      throw new ApiError(400, `The login provider said: ${params.get('error_description') || params.get('error')}`);
    }
    if (!expected || expected !== params.get('state')) {
      throw new ApiError(400, 'This login was not started from this page. Please log in again.');
    }
    const query = new URLSearchParams({ code: params.get('code') || '', state: params.get('state') || '' });
    const { data } = await api('GET', `/user/auth-callback?${query}`);
    sessionStorage.setItem(TOKEN, data.token);
  }

  function loggedOut(message) {
    stopFollowing();
    for (const key of Object.keys(sessionStorage)) {
      if (key.startsWith('playground.') && key !== LOGIN_STATE) sessionStorage.removeItem(key);
    }
    state.chatId = null;
    showSignedOut();
    if (message) showError(message);
  }

  async function logout() {
    try {
      await api('POST', '/user/logout');
    } finally {
      loggedOut();
      clearError();
    }
  }

  function showSignedOut() {
    $('login').hidden = false;
    for (const id of ['account', 'token-box', 'interview', 'assistant']) $(id).hidden = true;
    $('token').textContent = '';
  }

  // ---- interview -------------------------------------------------------------------------------

  const STATUS_TEXT = {
    NOT_STARTED: 'Describe your skills to get your interview questions.',
    QUESTION_NOT_READY: 'Writing your questions…',
    IN_PROGRESS: 'Answer every question. You can change an answer until the last one is in.',
    SUCCESS: 'Interview complete.',
  };

  async function loadInfo() {
    const { data } = await api('GET', '/user/info');
    $('whoami').textContent = data.username;
    const status = data.interviewQuestionStatus;
    $('interview-status').textContent = STATUS_TEXT[status] || status;
    $('interview').dataset.status = status;
    if (!$('skill').value) $('skill').value = data.skillDescription;
    $('skill-submit').textContent = status === 'NOT_STARTED' ? 'Start the interview' : 'Start a new interview';
    const score = $('score');
    score.hidden = status !== 'SUCCESS';
    if (status === 'SUCCESS') {
      score.textContent = `Your score: ${data.interviewScore} of ${state.questionCount || '?'} correct.`;
      score.dataset.score = data.interviewScore;
    }
    return data;
  }

  async function submitSkills(event) {
    event.preventDefault();
    const description = $('skill').value.trim();
    if (!description) return;
    clearError();
    await api('POST', '/user/skill-description', { description });
    $('questions').replaceChildren();
    await loadInfo();
    await pollQuestions();
  }

  // GET /user/questions answers 202 until they are written.
  async function pollQuestions() {
    const poll = ++state.polling;
    for (;;) {
      let result;
      try {
        result = await api('GET', '/user/questions');
      } catch (error) {
        if (error.status === 409) await loadInfo(); // the generation failed: back to NOT_STARTED
        throw error;
      }
      if (poll !== state.polling) return; // a newer description took over
      if (result.status === 200) {
        renderQuestions(result.data.questions || []);
        return;
      }
      await sleep(POLL_MS);
    }
  }

  function renderQuestions(questions) {
    state.questionCount = questions.length;
    const complete = questions.some((q) => q.correctAnswer !== undefined);
    const items = questions.map((question) => {
      const item = document.createElement('li');
      const fieldset = document.createElement('fieldset');
      fieldset.className = 'question';
      fieldset.dataset.id = question.id;
      const legend = document.createElement('legend');
      legend.textContent = question.content;
      fieldset.append(legend);
      question.choices.forEach((choice, index) => {
        const label = document.createElement('label');
        const input = document.createElement('input');
        input.type = 'radio';
        input.name = `question-${question.id}`;
        input.value = String(index);
        input.checked = question.userAnswer === index;
        input.disabled = complete;
        input.addEventListener('change', act(() => answer(question.id, index)));
        const text = document.createElement('span');
        text.textContent = choice;
        if (complete && index === question.correctAnswer) label.className = 'correct';
        else if (complete && index === question.userAnswer) label.className = 'wrong';
        label.append(input, text);
        fieldset.append(label);
      });
      if (complete && question.explanation) {
        const explanation = document.createElement('p');
        explanation.className = 'explanation';
        explanation.textContent = question.explanation;
        fieldset.append(explanation);
      }
      item.append(fieldset);
      return item;
    });
    $('questions').replaceChildren(...items);
  }

  async function answer(questionId, index) {
    clearError();
    await api('POST', `/user/questions/${questionId}/answer`, { answer: index });
    const info = await loadInfo();
    if (info.interviewQuestionStatus === 'SUCCESS') {
      await pollQuestions(); // now with the correct answers and explanations
      await loadInfo(); // the score, out of the number of questions
    }
  }

  // ---- chats -------------------------------------------------------------------------------------

  async function loadChats() {
    const { data } = await api('GET', '/assistant/chat?limit=50');
    const items = data.chats.map((chat) => {
      const item = document.createElement('li');
      const open = document.createElement('button');
      open.type = 'button';
      open.className = 'open';
      open.textContent = chat.title || `New chat ${chat.chatId}`;
      open.dataset.chatId = chat.chatId;
      open.setAttribute('aria-current', String(chat.chatId === state.chatId));
      open.addEventListener('click', act(() => openChat(chat.chatId)));
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.className = 'delete';
      remove.textContent = 'Delete';
      remove.setAttribute('aria-label', `Delete ${open.textContent}`);
      remove.addEventListener('click', act(() => deleteChat(chat.chatId)));
      item.append(open, remove);
      return item;
    });
    $('chats').replaceChildren(...items);
    return data.chats;
  }

  async function newChat() {
    clearError();
    const { data } = await api('POST', '/assistant/chat');
    await openChat(data.chatId);
    await loadChats();
    $('prompt').focus();
    return data.chatId;
  }

  async function deleteChat(chatId) {
    clearError();
    await api('DELETE', `/assistant/chat/${chatId}`);
    sessionStorage.removeItem(PARTIAL(chatId));
    if (chatId === state.chatId) {
      stopFollowing();
      state.chatId = null;
      sessionStorage.removeItem(OPEN_CHAT);
      $('messages').replaceChildren();
      setBusy(false);
    }
    await loadChats();
  }

  function messageItem(role, text) {
    const item = document.createElement('li');
    item.className = role;
    const label = document.createElement('span');
    label.className = 'role';
    label.textContent = role === 'user' ? 'You' : 'Assistant';
    const content = document.createElement('span');
    content.className = 'content';
    content.textContent = text;
    const meta = document.createElement('span');
    meta.className = 'meta';
    item.append(label, content, meta);
    $('messages').append(item);
    item.scrollIntoView({ block: 'nearest' });
    return item;
  }

  async function openChat(chatId) {
    clearError();
    stopFollowing(); // the reply we were reading goes on without us; it is saved
    let data;
    try {
      ({ data } = await api('GET', `/assistant/chat/${chatId}`));
    } catch (error) {
      if (error.status === 404) sessionStorage.removeItem(OPEN_CHAT);
      throw error;
    }
    state.chatId = chatId;
    sessionStorage.setItem(OPEN_CHAT, String(chatId));
    for (const button of document.querySelectorAll('#chats .open')) {
      button.setAttribute('aria-current', String(Number(button.dataset.chatId) === chatId));
    }
    $('messages').replaceChildren();
    for (const message of data.messages) messageItem(message.role, message.content).dataset.state = 'saved';
    const reply = data.reply || { status: 'idle' };
    if (reply.status === 'idle') {
      sessionStorage.removeItem(PARTIAL(chatId));
      setBusy(false);
      return;
    }
    // A reply is being written (this page was reloaded, or the chat opened elsewhere): pick it up.
    // What this tab showed of it is kept; reply.lastEventId says whether that is of this reply.
    const view = replyView(chatId);
    const saved = readPartial(chatId);
    if (saved && reply.lastEventId && sameReply(saved.id, reply.lastEventId) && !isAfter(saved.id, reply.lastEventId)) {
      view.lastId = saved.id;
      view.text = saved.text;
      view.content.textContent = saved.text;
    }
    await follow(view);
  }

  // ---- replies -----------------------------------------------------------------------------------

  function parseId(id) {
    const match = /^(\d+)-(\d+)$/.exec(id || '');
    return match ? [Number(match[1]), Number(match[2])] : null;
  }

  function sameReply(a, b) {
    const x = parseId(a);
    const y = parseId(b);
    return Boolean(x && y && x[0] === y[0]);
  }

  function isAfter(id, last) {
    const x = parseId(id);
    const y = parseId(last);
    if (!x || !y) return true;
    return x[0] !== y[0] ? x[0] > y[0] : x[1] > y[1];
  }

  function readPartial(chatId) {
    try {
      return JSON.parse(sessionStorage.getItem(PARTIAL(chatId)) || 'null');
    } catch {
      return null;
    }
  }

  // One assistant reply on screen, fed by a fetch stream, an EventSource, or both in turn.
  function replyView(chatId) {
    const item = messageItem('assistant', '');
    item.dataset.state = 'streaming';
    const view = { chatId, item, content: item.querySelector('.content'), meta: item.querySelector('.meta'),
      text: '', lastId: null, ended: false, detached: false, source: null, abort: null, attempts: 0 };
    state.view = view;
    setBusy(true);
    return view;
  }

  function onEvent(view, type, id, data) {
    if (view.ended || view.detached) return;
    if (id && view.lastId && !isAfter(id, view.lastId)) {
      stats.duplicates += 1; // the server promises none; counted so a test can hold it to that
      return;
    }
    if (id) view.lastId = id;
    if (type === 'done' || type === 'error') {
      finish(view, type, data);
      return;
    }
    view.text += data.content;
    view.content.textContent = view.text;
    sessionStorage.setItem(PARTIAL(view.chatId), JSON.stringify({ id: view.lastId, text: view.text }));
    view.item.scrollIntoView({ block: 'nearest' });
  }

  function finish(view, type, data) {
    view.ended = true;
    if (view.source) view.source.close();
    sessionStorage.removeItem(PARTIAL(view.chatId));
    const notes = [];
    if (type === 'error') {
      view.item.dataset.state = 'error';
      notes.push(data.message || 'The reply failed.');
      showError(data.message || 'The reply failed.');
    } else if (data.stopped) {
      view.item.dataset.state = 'stopped';
      notes.push('Stopped.');
    } else {
      view.item.dataset.state = 'done';
      if (data.finishReason === 'length') notes.push('Cut at the length limit.');
    }
    if (data.usage) notes.push(`${data.usage.promptTokens} + ${data.usage.completionTokens} tokens`);
    view.meta.textContent = notes.join(' ');
    if (state.view === view) setBusy(false);
    loadChats().catch(() => {}); // titles and order changed; a failure here is not the user's concern
  }

  function setBusy(busy) {
    $('send').disabled = busy;
    $('stop').disabled = !busy;
    $('messages').setAttribute('aria-busy', String(busy));
    $('reply-status').textContent = busy ? 'The assistant is writing…' : '';
  }

  // Stop reading the current reply (another chat was opened, or we log out). The reply goes on.
  function stopFollowing() {
    const view = state.view;
    if (!view) return;
    view.detached = true;
    if (view.source) view.source.close();
    if (view.abort) view.abort.abort();
    state.view = null;
  }

  // Server-Sent Events from a fetch body, parsed as EventSource does.
  async function readEvents(body, handle) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let pending = '';
    let type = '';
    let id = '';
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      const lines = (pending + value).split('\n');
      pending = lines.pop();
      for (const raw of lines) {
        const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
        if (line === '') {
          if (data.length) handle(type || 'message', id, JSON.parse(data.join('\n')));
          type = '';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue; // a heartbeat
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? '' : line.slice(colon + 1);
        if (text.startsWith(' ')) text = text.slice(1);
        if (field === 'event') type = text;
        else if (field === 'data') data.push(text);
        else if (field === 'id') id = text;
        // `retry:` is EventSource's reconnection delay; this reader resumes by itself (below).
      }
    }
  }

  async function send(event) {
    event.preventDefault();
    const prompt = $('prompt').value.trim();
    if (!prompt || (state.view && !state.view.ended && !state.view.detached)) return;
    clearError();
    const chatId = state.chatId || (await newChat());
    const question = messageItem('user', prompt);
    const view = replyView(chatId);
    const abort = new AbortController();
    view.abort = abort;
    let response;
    try {
      response = await fetch(`/assistant/chat/${chatId}/`, {
        method: 'POST', signal: abort.signal,
        headers: { ...authHeaders(), 'Content-Type': 'application/json', Accept: 'text/event-stream' },
        body: JSON.stringify({ prompt }),
      });
    } catch {
      if (view.detached) return;
      // No answer at all: whether the prompt was stored, the chat itself says.
      await openChat(chatId);
      return;
    }
    if (!response.ok) {
      question.remove();
      view.item.remove();
      view.ended = true;
      setBusy(false);
      await check(response); // throws with the server's message
      return;
    }
    $('prompt').value = '';
    stats.fetchStreams += 1;
    try {
      await readEvents(response.body, (type, id, data) => onEvent(view, type, id, data));
    } catch {
      // The connection broke (a pod went away, the network dropped): resumed below.
    }
    if (!view.ended && !view.detached) await follow(view);
  }

  async function stop() {
    if (!state.chatId) return;
    clearError();
    try {
      await api('POST', `/assistant/chat/${state.chatId}/stop`);
    } catch (error) {
      if (error.status !== 409) throw error; // 409: it ended meanwhile; its stream says how
    }
  }

  // Follow the rest of a reply with the browser's EventSource: a stream ticket stands in for the
  // Authentication header. On a dropped connection EventSource reconnects by itself with the
  // same URL (the ticket is good for a minute) and Last-Event-ID; a refused reconnect (an expired
  // ticket) is recovered with a new ticket from the last event shown.
  async function follow(view) {
    if (view.ended || view.detached) return;
    let ticket;
    try {
      ({ data: { ticket } } = await api('POST', `/assistant/chat/${view.chatId}/stream-ticket`));
    } catch (error) {
      if (error.status === 0 || error.status >= 500) {
        recoverLater(view);
      } else if (!view.ended && !view.detached) {
        finish(view, 'error', { message: error.message }); // the chat is gone, or we were logged out
      }
      return;
    }
    const query = new URLSearchParams({ ticket });
    if (view.lastId) query.set('lastEventId', view.lastId);
    const source = new EventSource(`/assistant/chat/${view.chatId}/stream?${query}`);
    view.source = source;
    stats.eventSources += 1;
    const parsed = (handler) => (message) => handler(JSON.parse(message.data), message.lastEventId);
    source.addEventListener('message', parsed((data, id) => {
      view.attempts = 0;
      onEvent(view, 'message', id, data);
    }));
    source.addEventListener('done', parsed((data, id) => onEvent(view, 'done', id, data)));
    source.addEventListener('error', (event) => {
      if (typeof event.data === 'string') {
        // The server's `event: error` (the reply failed), not a connection problem.
        onEvent(view, 'error', event.lastEventId, JSON.parse(event.data));
        return;
      }
      // While CONNECTING, EventSource retries by itself; CLOSED means the server refused.
      if (source.readyState === EventSource.CLOSED && !view.ended && !view.detached) recoverLater(view);
    });
  }

  function recoverLater(view) {
    const delay = RECOVER_MS[view.attempts];
    view.attempts += 1;
    if (delay === undefined) {
      showError('Lost the connection to the reply. Reload the page to pick it up again.');
      return;
    }
    setTimeout(act(() => recover(view)), delay);
  }

  async function recover(view) {
    if (view.ended || view.detached) return;
    stats.recoveries += 1;
    let data;
    try {
      ({ data } = await api('GET', `/assistant/chat/${view.chatId}`));
    } catch (error) {
      if (error.status === 0 || error.status >= 500) {
        recoverLater(view);
        return;
      }
      throw error;
    }
    if (data.reply.status === 'idle') {
      // It ended while we were away: the history has all of it.
      if (state.view === view) await openChat(view.chatId);
      return;
    }
    if (view.lastId && !sameReply(view.lastId, data.reply.lastEventId)) {
      view.lastId = null; // not the reply we were showing: start this one from its beginning
      view.text = '';
      view.content.textContent = '';
    }
    await follow(view);
  }

  // ---- start -------------------------------------------------------------------------------------

  async function enter() {
    $('login').hidden = true;
    for (const id of ['account', 'token-box', 'interview', 'assistant']) $(id).hidden = false;
    $('token').textContent = sessionStorage.getItem(TOKEN);
    const info = await loadInfo();
    const chats = await loadChats();
    const remembered = Number(sessionStorage.getItem(OPEN_CHAT)) || null;
    const chatId = chats.some((chat) => chat.chatId === remembered) ? remembered : chats[0] && chats[0].chatId;
    const work = [];
    if (chatId) work.push(openChat(chatId));
    if (info.interviewQuestionStatus !== 'NOT_STARTED') work.push(pollQuestions().then(loadInfo));
    await Promise.all(work);
  }

  async function boot() {
    $('login-button').addEventListener('click', act(startLogin));
    $('logout').addEventListener('click', act(logout));
    $('notice-close').addEventListener('click', clearError);
    $('skill-form').addEventListener('submit', act(submitSkills));
    $('chat-new').addEventListener('click', act(newChat));
    $('prompt-form').addEventListener('submit', act(send));
    $('stop').addEventListener('click', act(stop));
    $('prompt').addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $('prompt-form').requestSubmit();
      }
    });
    const params = new URLSearchParams(location.search);
    if (params.has('code') || params.has('error')) await act(finishLogin)(params);
    if (!sessionStorage.getItem(TOKEN)) {
      showSignedOut();
      return;
    }
    await act(enter)();
  }

  document.body.dataset.ready = 'false';
  boot().finally(() => {
    document.body.dataset.ready = 'true';
  });
})();
