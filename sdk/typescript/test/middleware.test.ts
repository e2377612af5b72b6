/**
 * Middleware options against a real sidecar: the handler deciding, the
 * fail modes, errors that never fail open, and the claims helpers.
 */
import assert from "node:assert/strict";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import express from "express";
import Fastify, { type FastifyRequest } from "fastify";
import {
  Effect,
  Outcome,
  sessionFromClaims,
  StepUpClient,
  subjectFromClaims,
  type DecideRequestInit,
  type RetryEvent,
  type StepUpResult,
} from "@stepup/client";
import { httpAnswer, stepUp, type StepUpOptions } from "@stepup/client/express";
import { stepUpHook } from "@stepup/client/fastify";
import { CutAtAnswer, freePort, ScriptedSidecar, Sidecar } from "./support.js";
import { REFUND_CHALLENGE, UNAVAILABLE_BODY } from "./scenario.js";

const refund = (amount: number, extra: Partial<DecideRequestInit> = {}): DecideRequestInit => ({
  action: "payments.refund",
  subject: { id: "m1" },
  session: { id: "m1-s", acr: "urn:stepup:aal1", amr: ["pwd"], authTime: new Date() },
  network: { ip: "127.0.0.1" },
  resource: { type: "refund", attributes: { amount } },
  ...extra,
});

/** An Express app with one route behind `stepUp(options)` that answers with what it saw. */
async function expressApp(
  options: Omit<StepUpOptions<express.Request>, "context"> & { context?: StepUpOptions<express.Request>["context"] },
): Promise<{ url: string; close: () => Promise<void> }> {
  const app = express();
  app.post(
    "/r/:amount",
    stepUp({ context: (req) => refund(Number(req.params["amount"])), ...options }),
    (req, res) => {
      const answer = req.stepup === undefined ? undefined : httpAnswer(req.stepup);
      if (answer !== undefined) {
        // The handler decides: it answers as the middleware would, adding its own field.
        res.status(answer.status).set(answer.headers).json({ ...answer.body, handled: true });
        return;
      }
      res.json({ outcome: Outcome[req.stepup?.outcome ?? 0], fallback: req.stepup?.error !== undefined });
    },
  );
  // Errors end as a quiet 500 (Express's default handler prints them).
  app.use((_err: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(500).json({ error: "internal" });
  });
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A Fastify app with the same route as `expressApp`, behind `stepUpHook(options)`. */
async function fastifyApp(
  options: Omit<StepUpOptions<FastifyRequest>, "context"> & { context?: StepUpOptions<FastifyRequest>["context"] },
): Promise<{ url: string; close: () => Promise<void> }> {
  const f = Fastify();
  f.post<{ Params: { amount: string } }>(
    "/r/:amount",
    {
      preHandler: stepUpHook({
        context: (req) => refund(Number((req.params as { amount: string }).amount)),
        ...options,
      }),
    },
    async (req) => ({ outcome: Outcome[req.stepup?.outcome ?? 0], fallback: req.stepup?.error !== undefined }),
  );
  const url = await f.listen({ port: 0, host: "127.0.0.1" });
  return { url, close: () => f.close() };
}

/** The same options behind both frameworks. */
const FRAMEWORKS = [
  ["Express", expressApp],
  ["Fastify", fastifyApp],
] as const;

async function post(url: string): Promise<{ status: number; headers: Headers; json: Record<string, unknown> }> {
  const res = await fetch(url, { method: "POST" });
  return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, unknown> };
}

/**
 * Asserts the answer's status, the headers every middleware answer has
 * (`Content-Type: application/json`, `Cache-Control: no-store`), `headers`
 * (null: absent), and the body: exactly `body`'s keys and values (a
 * `decision_id` of `UUID` must be a UUID).
 */
function assertAnswer(
  res: { status: number; headers: Headers; json: Record<string, unknown> },
  status: number,
  headers: Record<string, string | null>,
  body: Record<string, unknown>,
  what: string,
): void {
  assert.equal(res.status, status, `${what}: ${JSON.stringify(res.json)}`);
  assert.equal(res.headers.get("content-type"), "application/json", what);
  assert.equal(res.headers.get("cache-control"), "no-store", what);
  for (const [name, value] of Object.entries(headers)) assert.equal(res.headers.get(name), value, `${what}: ${name}`);
  const expected = { ...body };
  if (body["decision_id"] === UUID) {
    assert.match(String(res.json["decision_id"]), /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/, what);
    expected["decision_id"] = res.json["decision_id"];
  }
  assert.deepEqual(res.json, expected, what);
}

/** Stands for a decision id in `assertAnswer`'s body. */
const UUID = Symbol("a UUIDv7");

const FAILED_BODY = {
  error: "server_error",
  error_description: "the authorization check failed; the request was refused",
};

describe("middleware answers (Express and Fastify alike)", () => {
  let sidecar: Sidecar;
  let client: StepUpClient;
  let down: StepUpClient;
  const downRetries: RetryEvent[] = [];
  before(async () => {
    sidecar = await Sidecar.start({ admin: true });
    client = new StepUpClient({ target: sidecar.target, timeoutMs: 2000 });
    // Nothing listens there.
    down = new StepUpClient({
      target: `127.0.0.1:${await freePort()}`,
      timeoutMs: 500,
      hooks: { onRetry: (e) => downRetries.push(e) },
    });
  });
  after(async () => {
    client?.close();
    down?.close();
    await sidecar?.stop();
  });

  it("CHALLENGE: 401, the sidecar's WWW-Authenticate byte for byte, the RFC 9470 body", async () => {
    for (const [name, start] of FRAMEWORKS) {
      const app = await start({ client });
      try {
        assertAnswer(
          await post(`${app.url}/r/5000`),
          401,
          { "www-authenticate": REFUND_CHALLENGE, "retry-after": null },
          {
            error: "insufficient_user_authentication",
            error_description: "Refunds above 1,000 need re-verification",
            acr_values: "urn:stepup:aal2 urn:okta:loa:2fa:any http://schemas.openid.net/pape/policies/2007/06/multi-factor",
            max_age: 300,
            decision_id: UUID,
          },
          name,
        );
      } finally {
        await app.close();
      }
    }
  });

  it("DENY: 403 with the first DENY reason's message, no challenge", async () => {
    const context = (): DecideRequestInit => refund(1, { network: { ip: "127.0.0.1", country: "SY" } });
    for (const [name, start] of FRAMEWORKS) {
      const app = await start({ client, context });
      try {
        assertAnswer(
          await post(`${app.url}/r/1`),
          403,
          { "www-authenticate": null },
          { error: "access_denied", error_description: "This service is not available in your region", decision_id: UUID },
          name,
        );
      } finally {
        await app.close();
      }
    }
  });

  it("a CHALLENGE without a header, messages or max_age, and an unspecified outcome: the same shapes, with nulls", async () => {
    for (const [name, start] of FRAMEWORKS) {
      const scripted = await ScriptedSidecar.start([
        {
          response: {
            outcome: Outcome.OUTCOME_CHALLENGE,
            acrValues: ["urn:stepup:aal2"],
            // A DENY reason's message is not the challenge's, nor is an empty one.
            reasons: [
              { ruleId: "d", effect: Effect.EFFECT_DENY, message: "not this" },
              { ruleId: "c1", effect: Effect.EFFECT_CHALLENGE, message: "" },
            ],
            decisionId: "id-1",
          },
        },
        { response: { outcome: Outcome.OUTCOME_UNSPECIFIED, decisionId: "id-2" } },
        {
          response: {
            outcome: Outcome.OUTCOME_DENY,
            reasons: [
              { ruleId: "c", effect: Effect.EFFECT_CHALLENGE, message: "not this either" },
              { ruleId: "d1", effect: Effect.EFFECT_DENY, message: "" },
              { ruleId: "d2", effect: Effect.EFFECT_DENY, message: "the second" },
            ],
            decisionId: "id-3",
          },
        },
      ]);
      const scriptedClient = new StepUpClient({ target: scripted.target, timeoutMs: 2000 });
      const app = await start({ client: scriptedClient });
      try {
        assertAnswer(
          await post(`${app.url}/r/1`),
          401,
          { "www-authenticate": 'Bearer error="insufficient_user_authentication"' },
          {
            error: "insufficient_user_authentication",
            error_description: null,
            acr_values: "urn:stepup:aal2",
            max_age: null,
            decision_id: "id-1",
          },
          `${name} CHALLENGE`,
        );
        assertAnswer(
          await post(`${app.url}/r/1`),
          403,
          { "www-authenticate": null },
          { error: "access_denied", error_description: null, decision_id: "id-2" },
          `${name} UNSPECIFIED`,
        );
        assertAnswer(
          await post(`${app.url}/r/1`),
          403,
          {},
          { error: "access_denied", error_description: "the second", decision_id: "id-3" },
          `${name} DENY`,
        );
      } finally {
        await app.close();
        scriptedClient.close();
        await scripted.close();
      }
    }
  });

  it("fail closed with a sidecar that never answers (nothing listens, retried): 503, Retry-After: 1", async () => {
    for (const [name, start] of FRAMEWORKS) {
      const app = await start({ client: down });
      downRetries.length = 0;
      try {
        assertAnswer(await post(`${app.url}/r/1`), 503, { "retry-after": "1" }, UNAVAILABLE_BODY, name);
        assert.equal(downRetries.length, 2, `${name}: the never-sent Decide was retried`);
      } finally {
        await app.close();
      }
    }
  });

  it("fail closed when the connection breaks after the sidecar decided: 503, not retried, one decision", async () => {
    const proxy = await CutAtAnswer.start(sidecar.target);
    const retries: RetryEvent[] = [];
    const cut = new StepUpClient({ target: proxy.target, timeoutMs: 2000, hooks: { onRetry: (e) => retries.push(e) } });
    try {
      for (const [name, start] of FRAMEWORKS) {
        const app = await start({ client: cut, failMode: "closed" });
        const decisions = await sidecar.metric("stepup_decisions_total");
        try {
          assertAnswer(await post(`${app.url}/r/1`), 503, { "retry-after": "1" }, UNAVAILABLE_BODY, name);
          assert.equal(await sidecar.metric("stepup_decisions_total"), decisions + 1, `${name}: the sidecar decided once`);
          assert.deepEqual(retries, [], name);
        } finally {
          await app.close();
        }
      }
      assert.equal(proxy.cuts, 2);
    } finally {
      cut.close();
      await proxy.close();
    }
  });

  it("any other error (a request the sidecar refuses), whatever the fail mode: 500", async () => {
    const context = (): DecideRequestInit => refund(5000, { network: { ip: "not-an-ip" } });
    for (const [name, start] of FRAMEWORKS) {
      const app = await start({ client, failMode: "allow", context });
      try {
        assertAnswer(await post(`${app.url}/r/5000`), 500, { "retry-after": null }, FAILED_BODY, name);
      } finally {
        await app.close();
      }
    }
  });
});

describe("middleware options", () => {
  let sidecar: Sidecar;
  let client: StepUpClient;
  let down: StepUpClient;
  before(async () => {
    sidecar = await Sidecar.start();
    client = new StepUpClient({ target: sidecar.target, timeoutMs: 2000 });
    down = new StepUpClient({ target: `127.0.0.1:${await freePort()}`, timeoutMs: 500 });
  });
  after(async () => {
    client?.close();
    down?.close();
    await sidecar?.stop();
  });

  it("enforce: false lets the handler decide, with the decision on the request", async () => {
    const results: StepUpResult[] = [];
    const app = await expressApp({ client, enforce: false, onResult: (r) => results.push(r) });
    try {
      const res = await post(`${app.url}/r/5000`);
      assert.equal(res.status, 401);
      assert.equal(res.headers.get("www-authenticate"), REFUND_CHALLENGE);
      assert.equal(res.json["handled"], true);
      assert.equal(results[0]?.outcome, Outcome.OUTCOME_CHALLENGE);
      assert.equal((await post(`${app.url}/r/10`)).json["outcome"], "OUTCOME_ALLOW");
    } finally {
      await app.close();
    }
  });

  it("fail mode deny answers 403, allow goes ahead marked as a fallback, closed answers 503", async () => {
    const errors: string[] = [];
    for (const [failMode, status] of [
      ["deny", 403],
      ["allow", 200],
      ["closed", 503],
    ] as const) {
      const app = await expressApp({ client: down, failMode, onError: (e) => errors.push(e.reason ?? String(e.code)) });
      try {
        const res = await post(`${app.url}/r/5000`);
        assert.equal(res.status, status, failMode);
        if (failMode === "allow") assert.equal(res.json["fallback"], true);
        // No decision was made: no reason, an empty decision id.
        if (failMode === "deny") assert.deepEqual(res.json, { error: "access_denied", error_description: null, decision_id: "" });
        if (failMode === "closed") assert.deepEqual(res.json, UNAVAILABLE_BODY);
      } finally {
        await app.close();
      }
    }
    assert.deepEqual(errors, ["14", "14", "14"]);
  });

  it("a context function that throws fails the request (Express and Fastify error handling)", async () => {
    const boom = (): never => {
      throw new Error("no session");
    };
    const app = await expressApp({ client, failMode: "allow", context: boom });
    try {
      assert.equal((await fetch(`${app.url}/r/1`, { method: "POST" })).status, 500);
    } finally {
      await app.close();
    }
    const f = Fastify();
    f.post("/r", { preHandler: stepUpHook({ client, failMode: "allow", context: boom }) }, async () => ({ ok: true }));
    try {
      const res = await f.inject({ method: "POST", url: "/r" });
      assert.equal(res.statusCode, 500);
    } finally {
      await f.close();
    }
  });

  it("Fastify: a DENY is 403 and the handler does not run", async () => {
    let ran = false;
    const f = Fastify();
    f.post(
      "/r",
      { preHandler: stepUpHook({ client, context: () => refund(1, { network: { ip: "127.0.0.1", country: "SY" } }) }) },
      async () => {
        ran = true;
        return { ok: true };
      },
    );
    try {
      const url = await f.listen({ port: 0, host: "127.0.0.1" });
      const res = await post(`${url}/r`);
      assert.equal(res.status, 403);
      assert.equal(res.json["error"], "access_denied");
      assert.equal(ran, false);
    } finally {
      await f.close();
    }
  });
});

describe("claims helpers", () => {
  it("read sid, acr, amr and auth_time into the session", () => {
    assert.deepEqual(
      sessionFromClaims({ sid: "s1", acr: "urn:stepup:aal2", amr: ["pwd", "otp"], auth_time: 1_700_000_000, sub: "a" }),
      { id: "s1", acr: "urn:stepup:aal2", amr: ["pwd", "otp"], authTime: new Date(1_700_000_000_000) },
    );
  });

  it("leave out claims of the wrong type (unknown: no requirement met)", () => {
    assert.deepEqual(sessionFromClaims({ sid: 7, acr: ["x"], amr: [1, "otp", ""], auth_time: "1700000000" }), {
      amr: ["otp"],
    });
    assert.deepEqual(sessionFromClaims({ amr: "pwd", auth_time: -5 }), { amr: ["pwd"] });
    assert.deepEqual(sessionFromClaims({}), {});
  });

  it("read the subject, tenant and roles where told", () => {
    assert.deepEqual(subjectFromClaims({ sub: "alice", tid: "acme", roles: ["admin", 3] }, { tenantClaim: "tid", rolesClaim: "roles" }), {
      id: "alice",
      tenant: "acme",
      roles: ["admin"],
    });
    assert.deepEqual(subjectFromClaims({ sub: "alice", email: "a@x" }, { idClaim: "email" }), { id: "a@x" });
  });
});
