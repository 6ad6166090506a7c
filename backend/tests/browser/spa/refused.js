// From an origin the API does not list, the browser must keep every answer from the page.
"use strict";

run(async (params) => {
  const api = params.get("api");
  const credentials = { email: params.get("email"), password: params.get("password") };
  // A simple request: sent, answered, and the answer withheld from the page.
  await call("health", `${api}/health`);
  // JSON needs a preflight, which the API refuses: the sign-up itself is never sent.
  await call("signup", `${api}/api/auth/signup`, { method: "POST", body: credentials });
});
