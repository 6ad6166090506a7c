// One tab of live.html, in a frame of its own: its own login, writes and event stream (read by
// event-stream-reader.js), each through this frame's fetch; live.js drives it through `tab`.
"use strict";

const tabName = new URLSearchParams(location.search).get("tab");
let token = null;
// The stream last opened: its step (what it received) and the controller that closes it.
let stream = null;

window.tab = {
  steps,

  // What the stream last opened has received so far.
  get received() {
    return stream === null ? [] : stream.step.events;
  },

  async login(api, credentials) {
    const url = `${api}/api/auth/login`;
    const login = await call(`${tabName} login`, url, { method: "POST", body: credentials });
    if (login.status !== 200) throw new Error(`${tabName} login: ${JSON.stringify(login)}`);
    token = login.body.access_token;
    return login.body.user.id;
  },

  // A write that must succeed: what follows depends on it.
  async write(action, url, { method, body }) {
    const sentAt = Date.now();
    const step = await call(`${tabName} ${action}`, url, { method, token, body });
    step.sentAt = sentAt;
    if (!(step.status >= 200 && step.status < 300)) throw new Error(JSON.stringify(step));
    return step;
  },

  // Resolves once the answer has begun, when the server has fixed where the stream starts.
  listen(action, url, lastEventId = null) {
    const step = { name: `${tabName} ${action}`, method: "GET", url, lastEventId };
    Object.assign(step, { events: [], comments: [], end: null });
    steps.push(step);
    const controller = new AbortController();
    let opened;
    const open = new Promise((resolve) => (opened = resolve));
    const reading = readEventStream(url, {
      token,
      lastEventId,
      signal: controller.signal,
      onOpen: (response) => {
        step.status = response.status;
        step.contentType = response.headers.get("Content-Type");
        opened();
      },
      onComment: (text) => step.comments.push(text),
      onEvent: (event) => step.events.push({ ...event, receivedAt: Date.now() }),
    });
    const closed = reading.then(
      () => {
        step.end = "ended by the server";
      },
      (error) => {
        step.end = error.name === "AbortError" ? "aborted" : String(error);
        if (error.status) Object.assign(step, { status: error.status, body: error.body });
      },
    );
    stream = { step, controller, closed };
    // A stream that ends before it opens fails the wait for it.
    const endedFirst = closed.then(() => Promise.reject(new Error(`${step.name}: ${step.end}`)));
    return Promise.race([open, endedFirst]);
  },

  // Resolves once the stream has stopped: nothing reaches this tab after it.
  async stop() {
    if (stream === null) return;
    stream.controller.abort();
    await stream.closed;
  },
};
