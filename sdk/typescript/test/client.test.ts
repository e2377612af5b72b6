/**
 * The client against a real sidecar: error details, retries, deadlines,
 * Unix sockets, TLS and mutual TLS.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { credentials, Metadata } from "@grpc/grpc-js";
import { GrpcStatus, Outcome, StepUpClient, StepUpError, type CallEvent, type RetryEvent } from "@stepup/client";
import { DecideRequest, DecisionServiceClient } from "../src/gen/stepup/v1/decision.js";
import { CutAtAnswer, freePort, ScriptedSidecar, Sidecar, tempDir, type ScriptedError } from "./support.js";

const refund = (id: string, amount: number) => ({
  action: "payments.refund",
  subject: { id },
  session: { id: `${id}-s`, acr: "urn:stepup:aal1", amr: ["pwd"], authTime: new Date() },
  network: { ip: "127.0.0.1" },
  resource: { type: "refund", attributes: { amount } },
});

async function rejection(p: Promise<unknown>): Promise<StepUpError> {
  const err = await p.then(
    () => assert.fail("the call succeeded"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof StepUpError, String(err));
  return err;
}

describe("client over TCP", () => {
  let sidecar: Sidecar;
  let client: StepUpClient;
  before(async () => {
    sidecar = await Sidecar.start();
    client = new StepUpClient({ target: sidecar.target, timeoutMs: 2000 });
  });
  after(async () => {
    client?.close();
    await sidecar?.stop();
  });

  it("decides, with the generated types", async () => {
    const res = await client.decide(refund("c1", 5000));
    assert.equal(res.outcome, Outcome.OUTCOME_CHALLENGE);
    assert.equal(res.requirements[0]?.ruleId, "refund-large");
    assert.equal(res.maxAge?.seconds, 300);
    assert.match(res.policyRevision, /^sha256:[0-9a-f]{64}$/);
  });

  it("decides a batch", async () => {
    const res = await client.decideBatch({ requests: [refund("c2", 10), refund("c2", 5000)], combineChallenges: true });
    assert.deepEqual(
      res.responses.map((r) => r.outcome),
      [Outcome.OUTCOME_ALLOW, Outcome.OUTCOME_CHALLENGE],
    );
    assert.match(res.combined?.wwwAuthenticate ?? "", /^Bearer error="insufficient_user_authentication"/);
  });

  it("exposes the ErrorInfo reason, metadata and the BadRequest field", async () => {
    const err = await rejection(client.decide({ action: "payments.refund", subject: { id: "" } }));
    assert.equal(err.code, GrpcStatus.INVALID_ARGUMENT);
    assert.equal(err.reason, "INVALID_FIELD");
    assert.equal(err.domain, "stepup");
    assert.deepEqual(err.metadata, { field: "subject.id" });
    assert.deepEqual(err.fieldViolations, [{ field: "subject.id", description: "required" }]);
    assert.equal(err.unavailable, false);
    assert.equal(err.attempts, 1, "INVALID_ARGUMENT is not retried");

    const bad = await rejection(client.decide({ ...refund("c3", 1), network: { ip: "not-an-ip" } }));
    assert.equal(bad.metadata["field"], "network.ip");
  });

  it("exposes RecordStepUp's reason when reports are off", async () => {
    const err = await rejection(client.recordStepUp({ subjectId: "c4", evidence: "a.b.c" }));
    assert.equal(err.code, GrpcStatus.PERMISSION_DENIED);
    assert.equal(err.reason, "STEP_UP_REPORTS_DISABLED");
  });

  it("keeps a per-call deadline", async () => {
    await sidecar.pause();
    try {
      const started = Date.now();
      const err = await rejection(client.decide(refund("c5", 1), { timeoutMs: 200 }));
      assert.equal(err.code, GrpcStatus.DEADLINE_EXCEEDED);
      assert.ok(err.unavailable);
      const took = Date.now() - started;
      assert.ok(took >= 190 && took < 1500, `took ${took} ms`);
    } finally {
      sidecar.resume();
    }
  });

  it("stops a call on an AbortSignal", async () => {
    await sidecar.pause();
    try {
      const ctl = new AbortController();
      setTimeout(() => ctl.abort(), 50);
      const err = await rejection(client.decide(refund("c6", 1), { signal: ctl.signal, timeoutMs: 5000 }));
      assert.equal(err.code, GrpcStatus.CANCELLED);
    } finally {
      sidecar.resume();
    }
  });
});

describe("retries", () => {
  it("retries a Decide that was never sent (nothing listens), never RecordStepUp, reports both to the hooks, and fails closed", async () => {
    const calls: CallEvent[] = [];
    const retries: RetryEvent[] = [];
    // Nothing listens on this port: every attempt fails before a stream is opened.
    const client = new StepUpClient({
      target: `127.0.0.1:${await freePort()}`,
      timeoutMs: 2000,
      retries: 2,
      hooks: {
        onCall: (e) => calls.push(e),
        onRetry: (e) => retries.push(e),
      },
    });
    try {
      const decide = await rejection(client.decide(refund("r1", 1)));
      assert.equal(decide.code, GrpcStatus.UNAVAILABLE);
      assert.ok(decide.unavailable, "the fail mode answers it");
      assert.equal(decide.attempts, 3);
      assert.deepEqual(
        retries.map((r) => [r.method, r.attempt, r.error.code]),
        [
          ["Decide", 1, GrpcStatus.UNAVAILABLE],
          ["Decide", 2, GrpcStatus.UNAVAILABLE],
        ],
      );
      const record = await rejection(client.recordStepUp({ subjectId: "r1", evidence: "a.b.c" }));
      assert.equal(record.code, GrpcStatus.UNAVAILABLE);
      assert.equal(record.attempts, 1);
      assert.equal(retries.length, 2, "RecordStepUp is never retried");
      assert.deepEqual(
        calls.map((c) => [c.method, c.attempts, c.error?.code]),
        [
          ["Decide", 3, GrpcStatus.UNAVAILABLE],
          ["RecordStepUp", 1, GrpcStatus.UNAVAILABLE],
        ],
      );
    } finally {
      client.close();
    }
  });

  it("never retries a Decide whose connection broke after the sidecar decided: one decision, fails closed", async () => {
    const sidecar = await Sidecar.start({ admin: true });
    const proxy = await CutAtAnswer.start(sidecar.target);
    const retries: RetryEvent[] = [];
    const client = new StepUpClient({
      target: proxy.target,
      timeoutMs: 2000,
      retries: 2,
      hooks: { onRetry: (e) => retries.push(e) },
    });
    try {
      assert.equal(await sidecar.metric("stepup_decisions_total"), 0);
      const err = await rejection(client.decide(refund("cut1", 1)));
      assert.equal(err.code, GrpcStatus.UNAVAILABLE, err.message);
      assert.ok(err.unavailable, "the fail mode answers it");
      assert.equal(err.attempts, 1);
      assert.deepEqual(retries, []);
      assert.equal(proxy.cuts, 1, "the proxy broke the connection at the answer");
      assert.equal(await sidecar.metric("stepup_decisions_total"), 1, "the sidecar decided once");
      assert.equal(await sidecar.metric("stepup_grpc_requests_total", { method: "Decide" }), 1);
      // The sidecar itself still answers.
      const direct = new StepUpClient({ target: sidecar.target, timeoutMs: 2000 });
      try {
        assert.equal((await direct.decide(refund("cut1", 1))).outcome, Outcome.OUTCOME_ALLOW);
      } finally {
        direct.close();
      }
      assert.equal(await sidecar.metric("stepup_decisions_total"), 2);
    } finally {
      client.close();
      await proxy.close();
      await sidecar.stop();
    }
  });

  it("retries UNAVAILABLE SHUTTING_DOWN from stepup, and no other status from a server that got the call", async () => {
    const cases: { name: string; errors: ScriptedError[]; runs: number; ok: boolean }[] = [
      {
        name: "SHUTTING_DOWN twice, then an answer",
        errors: [
          { code: GrpcStatus.UNAVAILABLE, reason: "SHUTTING_DOWN" },
          { code: GrpcStatus.UNAVAILABLE, reason: "SHUTTING_DOWN" },
        ],
        runs: 3,
        ok: true,
      },
      { name: "UNAVAILABLE without details", errors: [{ code: GrpcStatus.UNAVAILABLE }], runs: 1, ok: false },
      {
        name: "SHUTTING_DOWN of another domain",
        errors: [{ code: GrpcStatus.UNAVAILABLE, reason: "SHUTTING_DOWN", domain: "example.com" }],
        runs: 1,
        ok: false,
      },
      { name: "UNAVAILABLE for another reason", errors: [{ code: GrpcStatus.UNAVAILABLE, reason: "OTHER" }], runs: 1, ok: false },
      { name: "RESOURCE_EXHAUSTED OVERLOADED", errors: [{ code: GrpcStatus.RESOURCE_EXHAUSTED, reason: "OVERLOADED" }], runs: 1, ok: false },
      { name: "DEADLINE_EXCEEDED", errors: [{ code: GrpcStatus.DEADLINE_EXCEEDED }], runs: 1, ok: false },
    ];
    for (const c of cases) {
      const server = await ScriptedSidecar.start(c.errors.map((error) => ({ error })));
      const retries: RetryEvent[] = [];
      const client = new StepUpClient({ target: server.target, timeoutMs: 2000, retries: 2, hooks: { onRetry: (e) => retries.push(e) } });
      try {
        if (c.ok) {
          assert.equal((await client.decide(refund("sd1", 1))).outcome, Outcome.OUTCOME_ALLOW, c.name);
          assert.deepEqual(
            retries.map((r) => [r.attempt, r.error.reason]),
            [
              [1, "SHUTTING_DOWN"],
              [2, "SHUTTING_DOWN"],
            ],
          );
        } else {
          const err = await rejection(client.decide(refund("sd1", 1)));
          assert.equal(err.code, c.errors[0]?.code, c.name);
          assert.equal(err.reason, c.errors[0]?.reason, c.name);
          assert.equal(err.attempts, 1, c.name);
          assert.deepEqual(retries, [], c.name);
        }
        assert.equal(server.runs, c.runs, c.name);
      } finally {
        client.close();
        await server.close();
      }
    }
  });

  it("a hook that throws does not change the result", async () => {
    const sidecar = await Sidecar.start();
    const client = new StepUpClient({
      target: sidecar.target,
      timeoutMs: 2000,
      hooks: {
        onCall: () => {
          throw new Error("broken metrics");
        },
      },
    });
    try {
      assert.equal((await client.decide(refund("h1", 1))).outcome, Outcome.OUTCOME_ALLOW);
    } finally {
      client.close();
      await sidecar.stop();
    }
  });
});

describe("Unix socket", () => {
  const tmp = tempDir();
  const path = join(tmp.dir, "stepup.sock");
  let sidecar: Sidecar;
  before(async () => {
    sidecar = await Sidecar.start({ listen: `unix:${path}` });
  });
  after(async () => {
    await sidecar?.stop();
    tmp.cleanup();
  });

  it("decides over unix:PATH", async () => {
    const client = new StepUpClient({ target: `unix:${path}`, timeoutMs: 2000 });
    try {
      assert.equal((await client.decide(refund("u1", 5000))).outcome, Outcome.OUTCOME_CHALLENGE);
    } finally {
      client.close();
    }
  });

  it("needs a host name as :authority: stepup refuses the socket path", async () => {
    // Why the client sets `grpc.default_authority` to `localhost` for
    // unix: targets: a channel that sends the path is refused.
    const raw = new DecisionServiceClient(`unix:${path}`, credentials.createInsecure(), {
      "grpc.default_authority": path,
    });
    try {
      const err = await new Promise<Error | null>((resolve) =>
        raw.decide(DecideRequest.fromPartial(refund("u2", 1)), new Metadata(), { deadline: Date.now() + 2000 }, (e) =>
          resolve(e),
        ),
      );
      assert.ok(err !== null, "a path :authority was accepted");
    } finally {
      raw.close();
    }
  });
});

/** A CA, a server certificate for `stepup.test` and a client certificate, made with openssl. */
function certificates(dir: string): Record<"ca" | "serverCert" | "serverKey" | "clientCert" | "clientKey", string> {
  const openssl = (...args: string[]): void => {
    execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=stepup test CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  const leaf = (name: string, ext: string): void => {
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl("req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`);
    openssl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
      "-out", `${name}.pem`, "-days", "1", "-extfile", `${name}.ext`);
  };
  leaf("server", "subjectAltName=DNS:stepup.test\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n");
  leaf("client", "subjectAltName=URI:spiffe://stepup.test/app\nextendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n");
  const f = (n: string): string => join(dir, n);
  return {
    ca: f("ca.pem"),
    serverCert: f("server.pem"),
    serverKey: f("server.key"),
    clientCert: f("client.pem"),
    clientKey: f("client.key"),
  };
}

describe("TLS", () => {
  const tmp = tempDir();
  const certs = certificates(tmp.dir);
  let sidecar: Sidecar;
  before(async () => {
    sidecar = await Sidecar.start({
      args: ["--tls-cert", certs.serverCert, "--tls-key", certs.serverKey, "--tls-client-ca", certs.ca],
    });
  });
  after(async () => {
    await sidecar?.stop();
    tmp.cleanup();
  });

  it("decides over mutual TLS with a CA, a client certificate and a server name", async () => {
    const client = new StepUpClient({
      target: sidecar.target,
      timeoutMs: 5000,
      tls: {
        ca: readFileSync(certs.ca),
        cert: readFileSync(certs.clientCert),
        key: readFileSync(certs.clientKey, "utf8"),
        serverName: "stepup.test",
      },
    });
    try {
      assert.equal((await client.decide(refund("t1", 5000))).outcome, Outcome.OUTCOME_CHALLENGE);
    } finally {
      client.close();
    }
  });

  it("fails without the client certificate, and against an untrusted CA: never sent, so retried", async () => {
    for (const tls of [
      { ca: readFileSync(certs.ca), serverName: "stepup.test" },
      { ca: readFileSync(certs.clientCert), cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey), serverName: "stepup.test" },
    ]) {
      const client = new StepUpClient({ target: sidecar.target, timeoutMs: 2000, retries: 2, tls });
      try {
        const err = await rejection(client.decide(refund("t2", 1)));
        assert.equal(err.code, GrpcStatus.UNAVAILABLE, err.message);
        // grpc-js sends a call only once the server's HTTP/2 SETTINGS came,
        // after the handshake: a refused handshake never carried the call.
        assert.equal(err.attempts, 3, err.message);
      } finally {
        client.close();
      }
    }
  });

  it("refuses a certificate without its key", () => {
    assert.throws(
      () => new StepUpClient({ target: sidecar.target, tls: { cert: readFileSync(certs.clientCert) } }),
      /`tls.cert` and `tls.key` go together/,
    );
  });
});
