/**
 * The payments service of `express-app.ts` on Fastify: the same routes and
 * the same step-up handling, with `stepUpHook` as the routes' `preHandler`.
 *
 * Run: `STEPUP_TARGET=unix:/run/stepup/stepup.sock OIDC_ISSUER=https://idp.example OIDC_AUDIENCE=app
 * OIDC_JWKS_URL=https://idp.example/jwks node dist/examples/fastify-app.js`
 */
import { pathToFileURL } from "node:url";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import { createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey, type JWTPayload } from "jose";
import { StepUpClient, StepUpError, sessionFromClaims, subjectFromClaims } from "@stepup/client";
import { stepUpHook } from "@stepup/client/fastify";

/** What the app needs. */
export interface AppOptions {
  readonly client: StepUpClient;
  /** The identity provider's keys. */
  readonly keys: JWTVerifyGetKey;
  readonly issuer: string;
  readonly audience: string;
}

declare module "fastify" {
  interface FastifyRequest {
    /** The verified claims of the bearer token. */
    claims: JWTPayload;
  }
}

interface Body {
  amount?: unknown;
  id_token?: unknown;
}

/**
 * The refund's amount as a resource attribute. Not a finite number: no
 * attribute, so the policy's `amount > 1000.0` fails to evaluate and the
 * rule counts as matched (fail closed: a challenge), where a NaN would be
 * refused by the sidecar (`INVALID_FIELD`, a 500 here).
 */
function amountOf(v: unknown): { amount?: number } {
  const amount = typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" ? Number(v) : NaN;
  return Number.isFinite(amount) ? { amount } : {};
}

/** The app. */
export function createApp(o: AppOptions): FastifyInstance {
  const app = Fastify();
  app.decorateRequest("claims", null as unknown as JWTPayload);

  // Authentication first: the step-up check needs a verified session.
  app.addHook("onRequest", async (req, reply) => {
    const m = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/.exec(req.headers.authorization ?? "");
    try {
      if (m?.[1] === undefined) throw new Error("no bearer token");
      req.claims = (await jwtVerify(m[1], o.keys, { issuer: o.issuer, audience: o.audience })).payload;
    } catch {
      return reply.code(401).header("WWW-Authenticate", 'Bearer error="invalid_token"').send({ error: "invalid_token" });
    }
    return undefined;
  });

  // The request context every route shares: who, which session, from where.
  const base = (req: FastifyRequest) => ({
    subject: subjectFromClaims(req.claims),
    session: sessionFromClaims(req.claims),
    // The edge (CDN, load balancer) sets the country; never trust a client's own header.
    network: { ip: req.socket.remoteAddress ?? "", country: String(req.headers["x-client-country"] ?? "") },
  });

  app.post<{ Body: Body }>(
    "/refunds",
    {
      preHandler: stepUpHook({
        client: o.client,
        context: (req) => ({
          ...base(req),
          action: "payments.refund",
          resource: { type: "refund", attributes: amountOf((req.body as Body | undefined)?.amount) },
        }),
      }),
    },
    async (req) => ({ refunded: Number(req.body.amount), decision_id: req.stepup?.response?.decisionId }),
  );

  app.get(
    "/balance",
    {
      preHandler: stepUpHook({
        client: o.client,
        context: (req) => ({ ...base(req), action: "payments.balance.read" }),
        // Reads may go ahead without the sidecar; everything else fails closed.
        failMode: (_err, req) => (req.method === "GET" ? "allow" : "closed"),
      }),
    },
    async (req) => ({ balance: 1234.5, checked: req.stepup?.response !== undefined }),
  );

  app.post<{ Body: Body }>("/step-up", async (req, reply) => {
    const idToken = typeof req.body.id_token === "string" ? req.body.id_token : "";
    try {
      const r = await o.client.recordStepUp({ evidence: idToken, subjectId: String(req.claims.sub ?? "") });
      return { elevation_expire_time: r.elevationExpireTime?.toISOString() };
    } catch (err) {
      if (!(err instanceof StepUpError)) throw err;
      // The sidecar says why (e.g. EVIDENCE_EXPIRED, EVIDENCE_MISMATCH).
      return reply.code(err.unavailable ? 503 : 400).send({ error: "step_up_not_recorded", reason: err.reason });
    }
  });

  return app;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const env = (name: string): string => {
    const v = process.env[name];
    if (v === undefined || v === "") throw new Error(`${name} is not set`);
    return v;
  };
  const app = createApp({
    client: new StepUpClient({ target: env("STEPUP_TARGET") }),
    keys: createRemoteJWKSet(new URL(env("OIDC_JWKS_URL"))),
    issuer: env("OIDC_ISSUER"),
    audience: env("OIDC_AUDIENCE"),
  });
  await app.listen({ port: Number(process.env["PORT"] ?? 3000) });
}
