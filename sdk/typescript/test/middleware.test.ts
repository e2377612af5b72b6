/**
 * Middleware options against a real sidecar: the handler deciding, the
 * fail modes, errors that never fail open, and the claims helpers.
 */
import assert from "node:assert/strict";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import express from "express";
import Fastify from "fastify";
import {
  Outcome,
  sessionFromClaims,
  StepUpClient,
  subjectFromClaims,
  type DecideRequestInit,
  type StepUpResult,
} from "@stepup/client";
import { httpAnswer, stepUp, type StepUpOptions } from "@stepup/client/express";
import { stepUpHook } from "@stepup/client/fastify";
import { freePort, Sidecar } from "./support.js";
import { REFUND_CHALLENGE } from "./scenario.js";

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

async function post(url: string): Promise<{ status: number; headers: Headers; json: Record<string, unknown> }> {
  const res = await fetch(url, { method: "POST" });
  return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, unknown> };
}

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
        if (failMode === "closed") assert.equal(res.json["error"], "stepup_unavailable");
      } finally {
        await app.close();
      }
    }
    assert.deepEqual(errors, ["14", "14", "14"]);
  });

  it("never fails open on a request the sidecar refuses as malformed: 500", async () => {
    const app = await expressApp({
      client,
      failMode: "allow",
      context: () => refund(5000, { network: { ip: "not-an-ip" } }),
    });
    try {
      const res = await post(`${app.url}/r/5000`);
      assert.equal(res.status, 500);
      assert.equal(res.json["error"], "stepup_error");
    } finally {
      await app.close();
    }
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
