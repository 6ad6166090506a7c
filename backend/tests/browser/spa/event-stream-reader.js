// How a browser reads GET /api/{user_id}/events: fetch() and a stream reader, because the
// native EventSource cannot send the Authorization header.
//
//   const controller = new AbortController();
//   await readEventStream(`${api}/api/${userId}/events`, {
//     token,
//     lastEventId,  // the id of the last event handled, to resume exactly after it
//     signal: controller.signal,
//     onEvent: ({ event, id, data }) => {
//       // event "task.upsert": data = { op: "upsert", task: {...} }
//       // event "task.delete": data = { op: "delete", task_id: "..." }
//       lastEventId = id;
//     },
//   });
//   // Resolved: the server ended the stream (token expired, session ended, client too slow,
//   // server shutting down); reconnect with lastEventId, after a token refresh if need be.
//
// Read line by line, as the format is defined: each line is "field: value", or ": text" for a
// comment (": stream open" first, ": heartbeat" while quiet, on a line of its own), and a blank
// line ends an event. This service ends lines with "\n".
"use strict";

// Resolves when the server ends the stream; rejects with an AbortError when `signal` aborts,
// with a TypeError when the network fails, and with an Error carrying `status` and `body` when
// the server refuses to open the stream (401, 403, 410 cursor_expired, 429 too_many_streams).
async function readEventStream(
  url,
  { token, lastEventId = null, signal, onOpen = () => {}, onEvent, onComment = () => {} },
) {
  const headers = { Authorization: `Bearer ${token}`, Accept: "text/event-stream" };
  if (lastEventId !== null) headers["Last-Event-ID"] = lastEventId;
  const response = await fetch(url, { headers, signal, cache: "no-store" });
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    throw Object.assign(new Error(`event stream refused: ${response.status}`), {
      status: response.status,
      body,
    });
  }
  onOpen(response);

  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const event = newEvent();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    // stream: true keeps a UTF-8 character split across two chunks whole.
    buffer += decoder.decode(value, { stream: true });
    const lines = buffer.split("\n");
    buffer = lines.pop(); // a line not yet complete: the next chunk ends it
    for (const line of lines) take(line, event, onEvent, onComment);
  }
}

function newEvent() {
  return { event: "message", id: null, data: [] };
}

// One line, as the format reads them: a blank line ends an event, ": text" is a comment
// (handed over at once, so a heartbeat shows the stream is alive), anything else a field.
function take(line, event, onEvent, onComment) {
  if (line === "") {
    // A block with no data line is no event (the format's rule).
    if (event.data.length > 0) {
      onEvent({ event: event.event, id: event.id, data: JSON.parse(event.data.join("\n")) });
    }
    Object.assign(event, newEvent());
    return;
  }
  const colon = line.indexOf(":");
  const field = colon === -1 ? line : line.slice(0, colon);
  const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
  if (field === "") onComment(value);
  else if (field === "event") event.event = value;
  else if (field === "id") event.id = value;
  else if (field === "data") event.data.push(value);
}
