/**
 * A payments service on Express that enforces step-up with stepup.
 *
 * - `POST /refunds {amount}`: asks the sidecar (`payments.refund`); a large
 *   refund from a password-only session gets the RFC 9470 401.
 * - `GET /balance`: asks too (`payments.balance.read`), but a read may go
 *   ahead when the sidecar is down (fail mode `allow` for GET only).
 * - `POST /step-up {id_token}`: the callback's end of a step-up: the new ID
 *   token from the identity provider is reported to the sidecar as evidence,
 *   which opens the session's elevation window.
 *
 * Sessions are bearer JWTs from the identity provider, verified with `jose`.
 *
 * Run: `STEPUP_TARGET=127.0.0.1:7171 OIDC_ISSUER=https://idp.example OIDC_AUDIENCE=app
 * OIDC_JWKS_URL=https://idp.example/jwks node dist/examples/express-app.js`
 */
import { pathToFileURL } from "node:url";
import express, { type Express, type Request } from "express";
import { createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from "jose";
import { StepUpClient, StepUpError, sessionFromClaims, subjectFromClaims, type JwtClaims } from "@stepup/client";
import { stepUp } from "@stepup/client/express";

/** What the app needs. */
export interface AppOptions {
  readonly client: StepUpClient;
  /** The identity provider's keys. */
  readonly keys: JWTVerifyGetKey;
  readonly issuer: string;
  readonly audience: string;
}

/** The verified claims of the request's bearer token, or undefined. */
async function claimsOf(req: Request, o: AppOptions): Promise<JwtClaims | undefined> {
  const auth = req.get("authorization") ?? "";
  const m = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/.exec(auth);
  if (m?.[1] === undefined) return undefined;
  try {
    return (await jwtVerify(m[1], o.keys, { issuer: o.issuer, audience: o.audience })).payload;
  } catch {
    return undefined;
  }
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
export function createApp(o: AppOptions): Express {
  const app = express();
  app.use(express.json());

  // Authentication first: the step-up check needs a verified session.
  app.use(async (req, res, next) => {
    const claims = await claimsOf(req, o);
    if (claims === undefined) {
      res.status(401).set("WWW-Authenticate", 'Bearer error="invalid_token"').json({ error: "invalid_token" });
      return;
    }
    res.locals["claims"] = claims;
    next();
  });

  // The request context every route shares: who, which session, from where.
  const base = (req: Request) => {
    const claims = req.res?.locals["claims"] as JwtClaims;
    return {
      subject: subjectFromClaims(claims),
      session: sessionFromClaims(claims),
      // The edge (CDN, load balancer) sets the country; never trust a client's own header.
      network: { ip: req.socket.remoteAddress ?? "", country: req.get("x-client-country") ?? "" },
    };
  };

  app.post(
    "/refunds",
    stepUp({
      client: o.client,
      context: (req) => ({
        ...base(req),
        action: "payments.refund",
        resource: { type: "refund", attributes: amountOf(req.body?.amount) },
      }),
    }),
    (req, res) => {
      res.json({ refunded: Number(req.body?.amount), decision_id: req.stepup?.response?.decisionId });
    },
  );

  app.get(
    "/balance",
    stepUp({
      client: o.client,
      context: (req) => ({ ...base(req), action: "payments.balance.read" }),
      // Reads may go ahead without the sidecar; everything else fails closed.
      failMode: (_err, req) => (req.method === "GET" ? "allow" : "closed"),
    }),
    (req, res) => {
      res.json({ balance: 1234.5, checked: req.stepup?.response !== undefined });
    },
  );

  app.post("/step-up", async (req, res) => {
    const claims = res.locals["claims"] as JwtClaims;
    const idToken = typeof req.body?.id_token === "string" ? req.body.id_token : "";
    try {
      const r = await o.client.recordStepUp({ evidence: idToken, subjectId: String(claims["sub"] ?? "") });
      res.json({ elevation_expire_time: r.elevationExpireTime?.toISOString() });
    } catch (err) {
      if (!(err instanceof StepUpError)) throw err;
      // The sidecar says why (e.g. EVIDENCE_EXPIRED, EVIDENCE_MISMATCH).
      res.status(err.unavailable ? 503 : 400).json({ error: "step_up_not_recorded", reason: err.reason });
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
  const client = new StepUpClient({ target: env("STEPUP_TARGET") });
  const app = createApp({
    client,
    keys: createRemoteJWKSet(new URL(env("OIDC_JWKS_URL"))),
    issuer: env("OIDC_ISSUER"),
    audience: env("OIDC_AUDIENCE"),
  });
  const port = Number(process.env["PORT"] ?? 3000);
  app.listen(port, () => console.log(`listening on :${port}`));
}
