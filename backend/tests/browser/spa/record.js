// Shared by the pages: each answer as a cross-origin SPA sees it, then one report to the
// page's own origin, where the test waits for it.
"use strict";

const steps = [];

// One request; records the status, the JSON body and the exposed headers, or the exception
// fetch threw (a CORS refusal is "TypeError: Failed to fetch", with no status at all).
async function call(name, url, { method = "GET", token, body, headers: sent = {} } = {}) {
  const step = { name, method, url };
  steps.push(step);
  const headers = { ...sent };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  try {
    const response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    step.status = response.status;
    step.headers = {
      link: response.headers.get("Link"),
      location: response.headers.get("Location"),
      requestId: response.headers.get("X-Request-ID"),
      etag: response.headers.get("ETag"),
      replayed: response.headers.get("Idempotent-Replayed"),
      retryAfter: response.headers.get("Retry-After"),
    };
    const text = await response.text();
    step.body = text === "" ? null : JSON.parse(text);
  } catch (error) {
    step.error = String(error);
  }
  return step;
}

// Runs a journey with the page's query parameters and reports every step, even when the
// journey stops half-way (then `failure` says why).
async function run(journey) {
  let failure = null;
  try {
    await journey(new URLSearchParams(location.search));
  } catch (error) {
    failure = String((error && error.stack) || error);
  }
  await fetch("/results", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ origin: location.origin, steps, failure }),
  });
}
