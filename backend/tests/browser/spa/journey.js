// The SPA's journey against the API at ?api= (another origin), as the SPA makes it: every
// URL after login comes from the API itself (user id, Location, Link).
"use strict";

function nextPage(link) {
  const match = /<([^>]+)>;\s*rel="next"/.exec(link || "");
  return match ? match[1] : null;
}

run(async (params) => {
  const api = params.get("api");
  const credentials = { email: params.get("email"), password: params.get("password") };

  await call("signup", `${api}/api/auth/signup`, { method: "POST", body: credentials });
  const login = await call("login", `${api}/api/auth/login`, { method: "POST", body: credentials });
  const token = login.body.access_token;
  const tasks = `${api}/api/${login.body.user.id}/tasks`;

  const locations = [];
  for (const title of ["first", "second", "third"]) {
    const body = { title, description: `the ${title} task` };
    const created = await call(`create ${title}`, tasks, { method: "POST", token, body });
    locations.push(created.headers.location);
  }
  const [first, second, third] = locations;

  // Three tasks, two a page: two pages; the bound only stops a Link that never ends.
  let next = `${tasks}?limit=2`;
  for (let page = 1; next && page <= 5; page += 1) {
    const listed = await call(`list page ${page}`, next, { token });
    next = nextPage(listed.headers && listed.headers.link);
  }

  const patched = await call("patch", first, {
    method: "PATCH",
    token,
    body: { title: "first, renamed" },
  });
  // Safe writes, as an SPA on a flaky network makes them: the version it read, and a key it
  // resends unchanged when it retries.
  const edit = {
    method: "PATCH",
    token,
    body: { description: "edited in this tab" },
    headers: { "If-Match": patched.headers.etag, "Idempotency-Key": crypto.randomUUID() },
  };
  const edited = await call("conditional patch", first, edit);
  await call("retried patch", first, edit);
  await call("stale patch", first, {
    method: "PATCH",
    token,
    body: { description: "edited in another tab" },
    headers: { "If-Match": patched.headers.etag },
  });
  await call("not modified", first, { token, headers: { "If-None-Match": edited.headers.etag } });
  await call("toggle", `${second}/complete`, { method: "PATCH", token });
  await call("delete", third, { method: "DELETE", token });
  await call("get deleted", third, { token });
  await call("invalid create", tasks, { method: "POST", token, body: { title: "" } });
  await call("boom", `${api}/api/test/boom`, { token });
});
