// A session as a cross-origin SPA keeps it: the access token in memory, the refresh token in
// the API's HttpOnly cookie. Served under /api/auth (the cookie's path) on http://localhost, so
// only HttpOnly keeps the cookie out of document.cookie. ?phase= says which part of the test
// this load is; ?then= is where the page goes once it has reported.
"use strict";

const params = new URLSearchParams(location.search);

// ---- The client, as the README quotes it ------------------------------------------------
const API = params.get("api"); // e.g. "https://api.example.com"
let accessToken = null; // in memory only; a reload gets a new one from refresh()
let refreshing = null;

async function logIn(email, password) {
  const response = await fetch(`${API}/api/auth/login`, {
    method: "POST",
    credentials: "include", // lets the browser keep the refresh cookie
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email, password }),
  });
  if (!response.ok) throw new Error(`login answered ${response.status}`);
  const session = await response.json();
  accessToken = session.access_token;
  return session;
}

// A new access token from the cookie; false means: log in again. Calls that expire together
// share one refresh.
function refresh() {
  refreshing ??= fetch(`${API}/api/auth/refresh`, {
    method: "POST",
    credentials: "include", // sends the cookie, and keeps the rotated one
    headers: { "X-Requested-With": "fetch" }, // the API's CSRF guard
  })
    .then(async (response) => {
      accessToken = response.ok ? (await response.json()).access_token : null;
      return response.ok;
    })
    .finally(() => (refreshing = null));
  return refreshing;
}

// fetch with the access token; a 401 `token_expired` is refreshed once and sent again.
async function apiFetch(path, init = {}) {
  const send = () =>
    fetch(`${API}${path}`, {
      ...init,
      headers: { ...init.headers, Authorization: `Bearer ${accessToken}` },
    });
  const response = await send();
  if (response.status !== 401) return response;
  const { code } = await response.clone().json().catch(() => ({}));
  return code === "token_expired" && (await refresh()) ? send() : response;
}

async function logOut() {
  // With the cookie, so its clearing is kept too.
  await apiFetch("/api/auth/logout", { method: "POST", credentials: "include" });
  accessToken = null;
}
// ---- End of the client --------------------------------------------------------------------

// The test's side: every request to the API is recorded as the page saw it, under the action
// that made it, with document.cookie as the page's script can read it once it was answered.
let action = null;
const pageFetch = window.fetch.bind(window);
window.fetch = async (url, init = {}) => {
  if (!String(url).startsWith(API)) return pageFetch(url, init);
  const headers = new Headers(init.headers);
  const step = {
    name: action,
    method: init.method || "GET",
    path: new URL(url).pathname,
    credentials: init.credentials || "same-origin",
    bearer: headers.has("Authorization"),
    csrfHeader: headers.has("X-Requested-With"),
  };
  steps.push(step);
  try {
    const response = await pageFetch(url, init);
    step.status = response.status;
    const text = await response.clone().text();
    step.body = text === "" ? null : JSON.parse(text);
    return response;
  } catch (error) {
    step.error = String(error);
    throw error;
  } finally {
    step.documentCookie = document.cookie;
  }
};

async function act(name, work) {
  action = name;
  try {
    return await work();
  } finally {
    action = null;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const newTask = (title) => ({
  method: "POST",
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify({ title }),
});

const phases = {
  // The SPA's origin: log in, outlive the access token, write again, log out, log in again
  // (leaving a live cookie for the next phase).
  async spa() {
    // A cookie script may read, on the refresh cookie's host and path: document.cookie shows
    // it, so a missing refresh_token is HttpOnly's doing, not the path's or the host's.
    document.cookie = "probe=visible; Path=/api/auth; SameSite=Strict";
    const email = params.get("email");
    const password = params.get("password");
    const session = await act("login", () => logIn(email, password));
    const tasks = `/api/${session.user.id}/tasks`;
    await act("create before expiry", () => apiFetch(tasks, newTask("before expiry")));
    await sleep((session.expires_in + 1) * 1000);
    await act("create after expiry", () => apiFetch(tasks, newTask("after refresh")));
    await act("logout", () => logOut());
    await act("refresh after logout", () => refresh());
    await act("login again", () => logIn(email, password));
  },
  // Another site (127.0.0.1, not localhost) that CORS_ORIGINS lists, with the user's cookie
  // in the browser: the requests are answered and readable, but carry no cookie.
  async "other-site"() {
    await act("refresh", () => refresh());
    await act("logout by cookie", () =>
      fetch(`${API}/api/auth/logout`, {
        method: "POST",
        credentials: "include",
        headers: { "X-Requested-With": "fetch" },
      }),
    );
  },
  // The SPA's origin loaded again: the cookie restores the session, which still holds.
  async reload() {
    await act("restore", () => refresh());
    const user = await act("me", async () => (await apiFetch("/api/auth/me")).json());
    await act("list", () => apiFetch(`/api/${user.id}/tasks`));
    await act("logout", () => logOut());
  },
};

run(async () => {
  const phase = phases[params.get("phase")];
  if (!phase) throw new Error(`unknown phase ${params.get("phase")}`);
  await phase();
}).then(() => {
  if (params.get("then")) location.assign(params.get("then"));
});
