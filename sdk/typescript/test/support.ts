/**
 * Test support: a real `stepup serve` (the binary in STEPUP_BIN) on the
 * example policies, and a test identity provider (an ES256 key, its JWKS
 * file, and tokens signed with it) that the sidecar trusts.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from "jose";

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
  ) {
    this.#child = child;
    child.stdout?.on("data", (d: Buffer) => (this.#log += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (this.#log += d.toString()));
    this.#exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  }

  /**
   * Starts the sidecar on `listen` (default: a free loopback port) with the
   * example policies and the config file `config` (TOML text), and waits
   * until it takes connections.
   */
  static async start(opts: { listen?: string; config?: string; args?: string[] } = {}): Promise<Sidecar> {
    const listen = opts.listen ?? `127.0.0.1:${await freePort()}`;
    const args = ["serve", "--policies", join(REPO, "policies"), "--listen", listen, "--admin", "off"];
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
    const sidecar = new Sidecar(child, listen);
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
      // It logs `serving gRPC` once its listener is bound.
      if (this.#log.includes("serving gRPC")) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`stepup serve did not come up in 30s:\n${this.#log}`);
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
