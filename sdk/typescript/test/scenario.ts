/**
 * The end-to-end scenario every example app must pass, on real sockets:
 * the app (Express or Fastify, with the middleware) in front of a real
 * `stepup serve` on the example policies that trusts the test identity
 * provider.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { join } from "node:path";
import { StepUpClient, type CallEvent } from "@stepup/client";
import { Idp, Sidecar, tempDir } from "./support.js";

/** What the scenario needs of an example app. */

/** An example app listening on a real socket. */
export interface RunningApp {
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  close(): Promise<void>;
}

/** The header the example policies' `refund-large` rule answers with (RFC 9470). */
export const REFUND_CHALLENGE =
  'Bearer error="insufficient_user_authentication", ' +
  'error_description="Refunds above 1,000 need re-verification", ' +
  'acr_values="urn:stepup:aal2 urn:okta:loa:2fa:any http://schemas.openid.net/pape/policies/2007/06/multi-factor", ' +
  'max_age="300"';

/** The body of the middleware's 503 (fail closed). */
export const UNAVAILABLE_BODY = {
  error: "temporarily_unavailable",
  error_description: "the authorization service is unavailable; the request was refused (fail closed)",
};

/** The scenario for the app that `start` runs, with the sidecar on `transport`. */
export function appScenario(
  name: string,
  transport: "tcp" | "unix",
  start: (o: { client: StepUpClient; idp: Idp }) => Promise<RunningApp>,
): void {
  describe(`${name} example app (${transport})`, () => {
    const tmp = tempDir();
    const calls: CallEvent[] = [];
    let idp: Idp;
    let sidecar: Sidecar;
    let client: StepUpClient;
    let app: RunningApp;
    // One subject per app, so that the two scenarios never share history.
    const sub = `alice-${name.toLowerCase()}`;
    const sid = `session-${name.toLowerCase()}`;

    before(async () => {
      idp = await Idp.create(tmp.dir);
      sidecar = await Sidecar.start({
        config: idp.toml(),
        ...(transport === "unix" ? { listen: `unix:${join(tmp.dir, "stepup.sock")}` } : {}),
      });
      client = new StepUpClient({
        target: sidecar.target,
        // Roomy for a debug build on a busy machine; the slow-sidecar test
        // checks that the answer comes with the deadline, not before.
        timeoutMs: 2000,
        hooks: { onCall: (e) => calls.push(e) },
      });
      app = await start({ client, idp });
    });

    after(async () => {
      await app?.close();
      client?.close();
      await sidecar?.stop();
      tmp.cleanup();
    });

    const call = async (
      method: "GET" | "POST",
      path: string,
      token: string,
      body?: unknown,
      headers: Record<string, string> = {},
    ): Promise<{ status: number; headers: Headers; json: Record<string, unknown> }> => {
      const res = await fetch(`${app.url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
          ...headers,
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, unknown> };
    };
    // A password-only session of `who` (default: the subject that steps up).
    // Other tests use other subjects: the policies' `refund-burst` rule
    // challenges a subject's eleventh refund within the hour.
    const password = (who = sub): Promise<string> =>
      idp.token({ sub: who, sid: who === sub ? sid : `${sid}-${who}`, acr: "urn:stepup:aal1", amr: ["pwd"], ageSeconds: 60 });

    it("answers a large refund from a password-only session with 401 and the exact RFC 9470 header", async () => {
      const res = await call("POST", "/refunds", await password(), { amount: 5000 });
      assert.equal(res.status, 401);
      assert.equal(res.headers.get("www-authenticate"), REFUND_CHALLENGE);
      assert.equal(res.headers.get("content-type"), "application/json");
      assert.equal(res.headers.get("cache-control"), "no-store");
      assert.match(String(res.json["decision_id"]), /^[0-9a-f-]{36}$/);
      assert.deepEqual(res.json, {
        error: "insufficient_user_authentication",
        error_description: "Refunds above 1,000 need re-verification",
        acr_values: "urn:stepup:aal2 urn:okta:loa:2fa:any http://schemas.openid.net/pape/policies/2007/06/multi-factor",
        max_age: 300,
        decision_id: res.json["decision_id"],
      });
      assert.equal(calls.at(-1)?.method, "Decide");
    });

    it("lets a small refund through with the decision on the request", async () => {
      const res = await call("POST", "/refunds", await password(), { amount: 50 });
      assert.equal(res.status, 200);
      assert.equal(res.json["refunded"], 50);
      assert.match(String(res.json["decision_id"]), /^[0-9a-f-]{36}$/);
    });

    it("challenges a refund whose amount is not a number (the rule fails closed)", async () => {
      for (const amount of ["lots", null]) {
        const res = await call("POST", "/refunds", await password(`${sub}-nan`), { amount });
        assert.equal(res.status, 401, JSON.stringify(amount));
        assert.equal(res.headers.get("www-authenticate"), REFUND_CHALLENGE);
      }
    });

    it("refuses step-up evidence the identity provider did not sign, naming the reason", async () => {
      const forger = await Idp.create(tempDir().dir);
      const forged = await forger.token({ sub, sid, acr: "urn:stepup:aal2", amr: ["pwd", "otp"] });
      const res = await call("POST", "/step-up", await password(), { id_token: forged });
      assert.equal(res.status, 400);
      assert.equal(res.json["reason"], "EVIDENCE_BAD_SIGNATURE");
      // Still challenged.
      assert.equal((await call("POST", "/refunds", await password(), { amount: 5000 })).status, 401);
    });

    it("lets the retry through after RecordStepUp with the step-up's ID token", async () => {
      const idToken = await idp.token({ sub, sid, acr: "urn:stepup:aal2", amr: ["pwd", "otp"] });
      const stepUp = await call("POST", "/step-up", await password(), { id_token: idToken });
      assert.equal(stepUp.status, 200, JSON.stringify(stepUp.json));
      assert.ok(Date.parse(String(stepUp.json["elevation_expire_time"])) > Date.now());
      // The same password-only session token: the elevation window counts.
      const res = await call("POST", "/refunds", await password(), { amount: 5000 });
      assert.equal(res.status, 200, JSON.stringify(res.json));
      assert.equal(res.json["refunded"], 5000);
    });

    it("lets a stronger session through without a step-up", async () => {
      const strong = await idp.token({ sub: `${sub}-2`, sid: `${sid}-2`, acr: "urn:stepup:aal2", amr: ["pwd", "otp"] });
      const res = await call("POST", "/refunds", strong, { amount: 5000 });
      assert.equal(res.status, 200, JSON.stringify(res.json));
    });

    it("answers a DENY with 403 and no challenge", async () => {
      const res = await call("POST", "/refunds", await password(`${sub}-deny`), { amount: 10 }, { "x-client-country": "KP" });
      assert.equal(res.status, 403);
      assert.equal(res.headers.get("www-authenticate"), null);
      assert.equal(res.headers.get("cache-control"), "no-store");
      assert.match(String(res.json["decision_id"]), /^[0-9a-f-]{36}$/);
      assert.deepEqual(res.json, {
        error: "access_denied",
        error_description: "This service is not available in your region",
        decision_id: res.json["decision_id"],
      });
    });

    it("fails closed with 503 when the sidecar is too slow, within the deadline", async () => {
      await sidecar.pause();
      try {
        const started = Date.now();
        const res = await call("POST", "/refunds", await password(`${sub}-slow`), { amount: 10 });
        assert.equal(res.status, 503);
        assert.equal(res.headers.get("retry-after"), "1");
        assert.deepEqual(res.json, UNAVAILABLE_BODY);
        const took = Date.now() - started;
        assert.ok(took >= 1900 && took < 6000, `answered after ${took} ms`);
        assert.equal(calls.at(-1)?.error?.code, 4 /* DEADLINE_EXCEEDED */);
      } finally {
        sidecar.resume();
      }
    });

    it("with the sidecar stopped: 503 for a refund, the configured answer (allow) for a read", async () => {
      // The sidecar works: a read is decided.
      const before = await call("GET", "/balance", await password());
      assert.equal(before.status, 200);
      assert.equal(before.json["checked"], true);

      await sidecar.stop();
      const refund = await call("POST", "/refunds", await password(), { amount: 10 });
      assert.equal(refund.status, 503);
      assert.equal(refund.headers.get("retry-after"), "1");
      assert.deepEqual(refund.json, UNAVAILABLE_BODY);
      const last = calls.at(-1);
      assert.equal(last?.error?.code, 14 /* UNAVAILABLE */);
      assert.equal(last?.attempts, 3, "a Decide that could not be sent is retried twice");

      const read = await call("GET", "/balance", await password());
      assert.equal(read.status, 200);
      assert.equal(read.json["checked"], false, "the fail mode answered, not the sidecar");
    });
  });
}
