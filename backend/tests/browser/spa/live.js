// Two tabs of one user (live-tab.html in two frames, each logged in on its own), both reading
// the event stream: what tab A writes reaches tab B through it; then tab B goes away for one
// change and resumes with Last-Event-ID.
"use strict";

// Every wait is bounded: a change that never arrives fails the page with what it waited for.
const WAIT_MS = 5000;

function within(what, promise) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`waited ${WAIT_MS} ms for ${what}`)), WAIT_MS);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

async function until(what, condition) {
  const deadline = Date.now() + WAIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`waited ${WAIT_MS} ms for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// A frame is a window of its own: its own globals, fetch and streams, as a tab has.
async function openTab(name) {
  const frame = document.createElement("iframe");
  frame.src = `live-tab.html?tab=${name}`;
  const loaded = new Promise((resolve) => frame.addEventListener("load", resolve, { once: true }));
  document.body.append(frame);
  await within(`tab ${name} to load`, loaded);
  return frame.contentWindow.tab;
}

run(async (params) => {
  const api = params.get("api");
  const credentials = { email: params.get("email"), password: params.get("password") };
  const tabs = [];
  try {
    const signup = call("signup", `${api}/api/auth/signup`, { method: "POST", body: credentials });
    await within("the signup", signup);
    const a = await openTab("A");
    const b = await openTab("B");
    tabs.push(a, b);
    const userId = await within("tab A's login", a.login(api, credentials));
    await within("tab B's login", b.login(api, credentials));
    const tasks = `${api}/api/${userId}/tasks`;
    const events = `${api}/api/${userId}/events`;
    await within("tab A's stream to open", a.listen("stream", events));
    await within("tab B's stream to open", b.listen("stream", events));
    const write = (action, url, options) =>
      within(`tab A's ${action}`, a.write(action, url, options));

    // Each change in tab A, and tab B has it before the next one is made.
    const body = { title: "written in tab A", description: "read in tab B" };
    const created = await write("create", tasks, { method: "POST", body });
    await until("tab B to see the create", () => b.received.length >= 1);
    const task = created.headers.location;
    await write("toggle", `${task}/complete`, { method: "PATCH" });
    await until("tab B to see the toggle", () => b.received.length >= 2);
    await write("rename", task, { method: "PATCH", body: { title: "renamed in tab A" } });
    await until("tab B to see the rename", () => b.received.length >= 3);
    await write("delete", task, { method: "DELETE" });
    await until("tab B to see the delete", () => b.received.length >= 4);

    // Tab B goes away; one change later it comes back from the last event it saw.
    const lastSeen = b.received.at(-1).id;
    await within("tab B's stream to stop", b.stop());
    const away = { title: "written while tab B was away" };
    const missed = await write("create while B is away", tasks, { method: "POST", body: away });
    await within("tab B's stream to resume", b.listen("resumed stream", events, lastSeen));
    await until("tab B to get the change it missed", () => b.received.length >= 1);
    // A change after it: whatever the resumed stream sent for the missed stretch came first.
    const completed = `${missed.headers.location}/complete`;
    await write("toggle after B is back", completed, { method: "PATCH" });
    await until("tab B to see the toggle after it came back", () => b.received.length >= 2);
    await until("tab A to see its six changes", () => a.received.length >= 6);
  } finally {
    for (const tab of tabs) {
      // A stop that never ends shows in the report (its stream's end stays null).
      await within("a tab's stream to stop", tab.stop()).catch(() => {});
      steps.push(...tab.steps);
    }
  }
});
