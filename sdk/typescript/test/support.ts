/**
 * Test support: a real `stepup serve` (the binary in STEPUP_BIN) on the
 * example policies, and a test identity provider (an ES256 key, its JWKS
 * file, and tokens signed with it) that the sidecar trusts.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { Metadata, Server, ServerCredentials, status as GrpcStatus, type StatusObject } from "@grpc/grpc-js";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from "jose";
import { DecideResponse, DecisionServiceService, type DeepPartial, Outcome } from "../src/gen/stepup/v1/decision.js";

/** The repository's root (this file runs from sdk/typescript/dist/test/). */
export const REPO = fileURLToPath(new URL("../../../../", import.meta.url));

/** The stepup binary under test: STEPUP_BIN, required (a test without a sidecar proves nothing). */
export function stepupBin(): string {
  const bin = process.env["STEPUP_BIN"];
  if (bin === undefined || bin === "") {
    throw new Error("STEPUP_BIN is not set: point it at a stepup binary (check.sh does)");
  }
  return bin;
}

/** A fresh temporary directory, removed by `cleanup`. */
export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "stepup-ts-"));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** A running `stepup serve`. */
export class Sidecar {
  #child: ChildProcess;
  #log = "";
  #exited: Promise<number | null>;
  #cleanup: () => void = () => {};

  private constructor(
    child: ChildProcess,
    /** The gRPC target: `127.0.0.1:PORT` or `unix:PATH`. */
    readonly target: string,
    /** The admin listener (`/metrics`), `127.0.0.1:PORT`; undefined when off. */
    readonly admin: string | undefined,
  ) {
    this.#child = child;
    child.stdout?.on("data", (d: Buffer) => (this.#log += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (this.#log += d.toString()));
    this.#exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  }

  /**
   * Starts the sidecar on `listen` (default: a free loopback port) with the
   * example policies and the config file `config` (TOML text), with its
   * admin listener on a free loopback port when `admin` is true (else off),
   * and waits until it takes connections.
   */
  static async start(
    opts: { listen?: string; config?: string; args?: string[]; admin?: boolean } = {},
  ): Promise<Sidecar> {
    const listen = opts.listen ?? `127.0.0.1:${await freePort()}`;
    const admin = opts.admin === true ? `127.0.0.1:${await freePort()}` : undefined;
    const args = ["serve", "--policies", join(REPO, "policies"), "--listen", listen, "--admin", admin ?? "off"];
    let cleanup = (): void => {};
    if (opts.config !== undefined) {
      const { dir, cleanup: rm } = tempDir();
      cleanup = rm;
      const file = join(dir, "stepup.toml");
      writeFileSync(file, opts.config);
      args.push("--config", file);
    }
    args.push(...(opts.args ?? []));
    const child = spawn(stepupBin(), args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } });
    const sidecar = new Sidecar(child, listen, admin);
    sidecar.#cleanup = cleanup;
    await sidecar.#waitUntilUp();
    return sidecar;
  }

  async #waitUntilUp(): Promise<void> {
    const deadline = Date.now() + 30_000;
    let exitCode: number | null | undefined;
    void this.#exited.then((c) => (exitCode = c));
    while (Date.now() < deadline) {
      if (exitCode !== undefined) throw new Error(`stepup serve exited (${exitCode}):\n${this.#log}`);
      // It logs `serving gRPC` once its listener is bound; the admin
      // listener answers /livez once it is up.
      if (this.#log.includes("serving gRPC") && (this.admin === undefined || (await this.#live()))) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`stepup serve did not come up in 30s:\n${this.#log}`);
  }

  async #live(): Promise<boolean> {
    try {
      return (await fetch(`http://${this.admin}/livez`)).ok;
    } catch {
      return false;
    }
  }

  /**
   * The sum of the samples of the metric `name` on the admin listener's
   * /metrics whose labels include `labels` (0 when there are none).
   */
  async metric(name: string, labels: Readonly<Record<string, string>> = {}): Promise<number> {
    if (this.admin === undefined) throw new Error("the admin listener is off: start the sidecar with `admin: true`");
    const res = await fetch(`http://${this.admin}/metrics`);
    if (!res.ok) throw new Error(`GET /metrics answered ${res.status}`);
    let sum = 0;
    for (const line of (await res.text()).split("\n")) {
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (m === null || m[1] !== name) continue;
      const found = new Map([...(m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
      if (Object.entries(labels).every(([k, v]) => found.get(k) === v)) sum += Number(m[3]);
    }
    return sum;
  }

  /** What the sidecar printed. */
  get log(): string {
    return this.#log;
  }

  /**
   * Freezes the process (SIGSTOP): connections stay open, nothing is
   * answered. Resolves once every thread is stopped (Linux's /proc): on a
   * busy machine a running worker thread can still answer a call between
   * the signal and the group stop.
   */
  async pause(): Promise<void> {
    this.#child.kill("SIGSTOP");
    const tasks = `/proc/${this.#child.pid}/task`;
    const deadline = Date.now() + 10_000;
    for (;;) {
      const states = readdirSync(tasks).map((t) => {
        try {
          // `pid (comm) S ...`: the state follows the last `)`.
          const stat = readFileSync(`${tasks}/${t}/stat`, "utf8");
          return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
        } catch {
          return "T"; // the thread is gone
        }
      });
      if (states.every((st) => st === "T")) return;
      if (Date.now() > deadline) throw new Error(`stepup serve did not stop: thread states ${states.join("")}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Thaws a paused process (SIGCONT). */
  resume(): void {
    this.#child.kill("SIGCONT");
  }

  /** Stops it (SIGTERM, SIGCONT first in case it is paused) and waits for the exit. */
  async stop(): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) {
      this.#child.kill("SIGTERM");
      this.#child.kill("SIGCONT");
      await this.#exited;
    }
    this.#cleanup();
  }
}

/**
 * A TCP proxy in front of a plaintext gRPC server at `upstream`
 * (`127.0.0.1:PORT`) that breaks each connection once the server has
 * answered a call: it forwards the client's bytes, and the server's HTTP/2
 * frames until the first HEADERS frame of a stream (the start of a call's
 * answer, sent once the server has decided); then it destroys both sockets
 * without forwarding that frame. The client sees its connection reset
 * mid-call.
 */
export class CutAtAnswer {
  /** Connections broken at an answer. */
  cuts = 0;
  readonly #server = createServer((client) => this.#connection(client));
  readonly #sockets = new Set<Socket>();

  private constructor(readonly upstream: string) {}

  static async start(upstream: string): Promise<CutAtAnswer> {
    const proxy = new CutAtAnswer(upstream);
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once("error", reject);
      proxy.#server.listen(0, "127.0.0.1", () => resolve());
    });
    return proxy;
  }

  /** The address to dial: `127.0.0.1:PORT`. */
  get target(): string {
    const address = this.#server.address();
    if (typeof address !== "object" || address === null) throw new Error("the proxy is not listening");
    return `127.0.0.1:${address.port}`;
  }

  #connection(client: Socket): void {
    const colon = this.upstream.lastIndexOf(":");
    const server = connect(Number(this.upstream.slice(colon + 1)), this.upstream.slice(0, colon));
    for (const s of [client, server]) {
      this.#sockets.add(s);
      s.on("close", () => this.#sockets.delete(s));
      // A reset is what this proxy is for.
      s.on("error", () => {});
    }
    const close = (): void => {
      client.destroy();
      server.destroy();
    };
    client.on("close", close);
    server.on("close", close);
    client.on("data", (chunk: Buffer) => server.write(chunk));
    let pending = Buffer.alloc(0);
    server.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      // HTTP/2 frames (RFC 9113 section 4.1): a 9-byte header (length 24
      // bits, type, flags, stream id 31 bits), then the payload.
      while (pending.length >= 9) {
        const size = 9 + pending.readUIntBE(0, 3);
        if (pending.length < size) return;
        const type = pending[3];
        const stream = pending.readUInt32BE(5) & 0x7fffffff;
        if (type === 0x1 && stream !== 0) {
          this.cuts += 1;
          close();
          return;
        }
        client.write(pending.subarray(0, size));
        pending = pending.subarray(size);
      }
    });
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** An error status a ScriptedSidecar answers with, with a `stepup` ErrorInfo when `reason` is set. */
export interface ScriptedError {
  readonly code: GrpcStatus;
  readonly reason?: string;
  /** The ErrorInfo's domain; default `stepup`. */
  readonly domain?: string;
}

/** One scripted answer to Decide. */
export type ScriptedAnswer = { readonly error: ScriptedError } | { readonly response: DeepPartial<DecideResponse> };

/** A `google.rpc.Status` with one `google.rpc.ErrorInfo`, as stepup puts in `grpc-status-details-bin`. */
function statusDetails(code: GrpcStatus, message: string, reason: string, domain: string): Buffer {
  const info = new BinaryWriter().uint32(10).string(reason).uint32(18).string(domain).finish();
  const any = new BinaryWriter()
    .uint32(10)
    .string("type.googleapis.com/google.rpc.ErrorInfo")
    .uint32(18)
    .bytes(info)
    .finish();
  return Buffer.from(new BinaryWriter().uint32(8).int32(code).uint32(18).string(message).uint32(26).bytes(any).finish());
}

/**
 * A grpc-js server of `stepup.v1.DecisionService` that answers Decide
 * calls as scripted, in order (ALLOW once the script is done), for answers
 * a real sidecar gives only in rare states (SHUTTING_DOWN) or never (an
 * unspecified outcome). It counts the Decide calls it ran.
 */
export class ScriptedSidecar {
  /** Decide calls run. */
  runs = 0;

  private constructor(
    readonly server: Server,
    /** `127.0.0.1:PORT`. */
    readonly target: string,
  ) {}

  static async start(script: readonly ScriptedAnswer[]): Promise<ScriptedSidecar> {
    const server = new Server();
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    const scripted = new ScriptedSidecar(server, `127.0.0.1:${port}`);
    const unimplemented = (_call: unknown, cb: (e: Partial<StatusObject>) => void): void =>
      cb({ code: GrpcStatus.UNIMPLEMENTED, details: "not scripted" });
    server.addService(DecisionServiceService, {
      decide: (_call: unknown, cb: (e: Partial<StatusObject> | null, r?: DecideResponse) => void) => {
        const answer = script[scripted.runs];
        scripted.runs += 1;
        if (answer === undefined) {
          cb(null, DecideResponse.fromPartial({ outcome: Outcome.OUTCOME_ALLOW, decisionId: "scripted-allow" }));
        } else if ("response" in answer) {
          cb(null, DecideResponse.fromPartial(answer.response));
        } else {
          const { code, reason, domain } = answer.error;
          const metadata = new Metadata();
          if (reason !== undefined) {
            metadata.set("grpc-status-details-bin", statusDetails(code, "scripted", reason, domain ?? "stepup"));
          }
          cb({ code, details: "scripted", metadata });
        }
      },
      decideBatch: unimplemented,
      recordStepUp: unimplemented,
    });
    return scripted;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.tryShutdown(() => resolve()));
  }
}

/** The issuer URL of the test identity provider. */
export const ISSUER = "https://idp.test";
/** The audience of its tokens (the application's client id). */
export const AUDIENCE = "stepup-app";

/** A test identity provider: one ES256 key, published in a JWKS file. */
export class Idp {
  private constructor(
    readonly privateKey: CryptoKey,
    readonly publicJwk: JWK,
    readonly jwksFile: string,
  ) {}

  static async create(dir: string): Promise<Idp> {
    const { privateKey, publicKey } = await generateKeyPair("ES256");
    const jwk = { ...(await exportJWK(publicKey)), kid: "idp-key-1", alg: "ES256", use: "sig" };
    const jwksFile = join(dir, "jwks.json");
    writeFileSync(jwksFile, JSON.stringify({ keys: [jwk] }));
    return new Idp(privateKey, jwk, jwksFile);
  }

  /** The `[trust]` section of a config file believing this provider. */
  toml(): string {
    return `[[trust.issuers]]\nissuer = "${ISSUER}"\naudiences = ["${AUDIENCE}"]\njwks_file = ${JSON.stringify(this.jwksFile)}\n`;
  }

  /**
   * A token of a session: `sub`, `sid`, `acr`, `amr`, authenticated and
   * issued `ageSeconds` ago, valid for an hour.
   */
  async token(claims: { sub: string; sid: string; acr: string; amr: string[]; ageSeconds?: number }): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const at = now - (claims.ageSeconds ?? 0);
    return new SignJWT({ sid: claims.sid, acr: claims.acr, amr: claims.amr, auth_time: at })
      .setProtectedHeader({ alg: "ES256", kid: "idp-key-1", typ: "JWT" })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject(claims.sub)
      .setIssuedAt(at)
      .setExpirationTime(now + 3600)
      .sign(this.privateKey);
  }
}
