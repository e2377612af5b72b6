/**
 * What the Express and Fastify middleware share: ask the sidecar, apply the
 * fail mode, and turn the result into the HTTP answer (401 with the RFC 9470
 * challenge, 403, 503, 500: one JSON body schema, see `httpAnswer`) or a
 * go-ahead.
 */
import type { StepUpClient, DecideRequestInit } from "./client.js";
import { StepUpError } from "./errors.js";
import { Effect, Outcome, type DecideResponse } from "./gen/stepup/v1/decision.js";

/**
 * What to do when the sidecar cannot answer (unreachable, too slow,
 * overloaded): `closed` answers 503 `temporarily_unavailable` with
 * `Retry-After: 1` (the default), `deny` answers 403 as a DENY would (with
 * no reason and an empty `decision_id`), `allow` lets the request go ahead
 * (fail open: choose it only for requests that are safe without a decision).
 */
export type FailMode = "closed" | "deny" | "allow";

/** The result of the step-up check, put on the request as `req.stepup`. */
export interface StepUpResult {
  /** The outcome that applies: the sidecar's, or the fail mode's. */
  readonly outcome: Outcome;
  /** The sidecar's decision; undefined when the fail mode answered. */
  readonly response: DecideResponse | undefined;
  /** Why the sidecar did not answer, when the fail mode answered. */
  readonly error: StepUpError | undefined;
}

/** An HTTP answer the middleware sends instead of calling the handler. */
export interface HttpAnswer {
  /** 401, 403, 500 or 503. */
  readonly status: number;
  /** Headers to set: `Content-Type`, `Cache-Control`, and `WWW-Authenticate` or `Retry-After`. */
  readonly headers: Readonly<Record<string, string>>;
  /** The JSON body: `error`, `error_description`, and for a decision its fields and `decision_id`. */
  readonly body: Readonly<Record<string, unknown>>;
}

/** The middleware's options; `Req` is the framework's request type. */
export interface StepUpOptions<Req> {
  /** The client of the sidecar. */
  readonly client: StepUpClient;
  /**
   * Maps the incoming request to the DecideRequest: action, subject,
   * session (see `sessionFromClaims`), device, network, resource. It may be
   * async. If it throws, the request fails with the framework's error
   * handling (500 by default): never a silent allow.
   */
  readonly context: (req: Req) => DecideRequestInit | Promise<DecideRequestInit>;
  /**
   * true (default): answer CHALLENGE with 401 and DENY with 403 here. false:
   * let the handler decide: every decision goes on to the handler as
   * `req.stepup` (use `httpAnswer(req.stepup)` to answer as the middleware
   * would). The fail mode's `closed` still answers 503 either way.
   */
  readonly enforce?: boolean;
  /**
   * What to do when the sidecar cannot answer; default `closed` (503). A
   * function chooses per request, e.g. `allow` for reads. Errors other than
   * unavailability (a request the sidecar refuses as malformed) are never
   * answered by the fail mode: they always give 500.
   */
  readonly failMode?: FailMode | ((error: StepUpError, req: Req) => FailMode);
  /** The deadline of the Decide call in milliseconds (instead of the client's). */
  readonly timeoutMs?: number;
  /** Metrics hook: every result, the fail mode's included. A hook that throws is ignored. */
  readonly onResult?: (result: StepUpResult, req: Req) => void;
  /** Metrics hook: every error of the Decide call, before the fail mode applies. */
  readonly onError?: (error: StepUpError, req: Req) => void;
}

/** The `WWW-Authenticate` of a CHALLENGE whose decision carries none: the RFC 9470 error alone. */
const BARE_CHALLENGE = 'Bearer error="insufficient_user_authentication"';

/** The headers of every answer the middleware sends: a JSON body no cache may keep. */
const JSON_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "Content-Type": "application/json",
  "Cache-Control": "no-store",
});

/** The message of the first reason with `effect` that has one: written for the end user. */
function reasonMessage(response: DecideResponse | undefined, effect: Effect): string | null {
  return response?.reasons.find((r) => r.effect === effect && r.message !== "")?.message ?? null;
}

/**
 * The answer for a result: undefined to go ahead (ALLOW); else a JSON
 * answer with `Content-Type: application/json` and `Cache-Control:
 * no-store`:
 *
 * - CHALLENGE: 401, `WWW-Authenticate` the decision's `wwwAuthenticate`
 *   byte for byte (`Bearer error="insufficient_user_authentication"` when it
 *   is empty), body `{"error":"insufficient_user_authentication",
 *   "error_description", "acr_values", "max_age", "decision_id"}`:
 *   `error_description` is the message of the first CHALLENGE reason that
 *   has one (else null), `acr_values` the ACR values joined by one space,
 *   `max_age` whole seconds (else null);
 * - DENY, and an outcome this version does not know: 403, body
 *   `{"error":"access_denied","error_description","decision_id"}` with the
 *   first DENY reason's message (else null).
 *
 * `decision_id` is empty when the fail mode answered (no decision was made).
 */
export function httpAnswer(result: StepUpResult): HttpAnswer | undefined {
  const res = result.response;
  const decisionId = res?.decisionId ?? "";
  switch (result.outcome) {
    case Outcome.OUTCOME_ALLOW:
      return undefined;
    case Outcome.OUTCOME_CHALLENGE:
      return {
        status: 401,
        headers: {
          ...JSON_HEADERS,
          "WWW-Authenticate": res !== undefined && res.wwwAuthenticate !== "" ? res.wwwAuthenticate : BARE_CHALLENGE,
        },
        body: {
          error: "insufficient_user_authentication",
          error_description: reasonMessage(res, Effect.EFFECT_CHALLENGE),
          acr_values: (res?.acrValues ?? []).join(" "),
          max_age: res?.maxAge?.seconds ?? null,
          decision_id: decisionId,
        },
      };
    case Outcome.OUTCOME_DENY:
      return {
        status: 403,
        headers: JSON_HEADERS,
        body: { error: "access_denied", error_description: reasonMessage(res, Effect.EFFECT_DENY), decision_id: decisionId },
      };
    default:
      // An outcome this version does not know (never sent by a sidecar): refuse.
      return {
        status: 403,
        headers: JSON_HEADERS,
        body: { error: "access_denied", error_description: null, decision_id: decisionId },
      };
  }
}

/** The 503 of fail mode `closed`: the sidecar gave no answer (unreachable, too slow, overloaded). */
const UNAVAILABLE: HttpAnswer = {
  status: 503,
  headers: { ...JSON_HEADERS, "Retry-After": "1" },
  body: {
    error: "temporarily_unavailable",
    error_description: "the authorization service is unavailable; the request was refused (fail closed)",
  },
};

/** The 500 of any other failed check (a request the sidecar refused: a bug in the context function, never a fail-mode case). */
const FAILED: HttpAnswer = {
  status: 500,
  headers: JSON_HEADERS,
  body: { error: "server_error", error_description: "the authorization check failed; the request was refused" },
};

/** An answer's body as the bytes to send (JSON, UTF-8); sent as bytes, the frameworks add no charset to the Content-Type. */
export function answerBytes(answer: HttpAnswer): Buffer {
  return Buffer.from(JSON.stringify(answer.body), "utf8");
}

function safely(hook: () => void): void {
  try {
    hook();
  } catch {
    // Metrics hooks never change the answer.
  }
}

/**
 * Runs the check for one request: the result to put on the request, and
 * the answer to send instead of the handler (undefined: call the handler).
 */
export async function check<Req>(
  options: StepUpOptions<Req>,
  req: Req,
): Promise<{ result: StepUpResult | undefined; answer: HttpAnswer | undefined }> {
  const request = await options.context(req);
  let result: StepUpResult;
  try {
    const timeout = options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs };
    const response = await options.client.decide(request, timeout);
    result = { outcome: response.outcome, response, error: undefined };
  } catch (err) {
    if (!(err instanceof StepUpError)) throw err;
    safely(() => options.onError?.(err, req));
    if (!err.unavailable) return { result: undefined, answer: FAILED };
    const mode = typeof options.failMode === "function" ? options.failMode(err, req) : (options.failMode ?? "closed");
    if (mode === "allow") result = { outcome: Outcome.OUTCOME_ALLOW, response: undefined, error: err };
    else if (mode === "deny") result = { outcome: Outcome.OUTCOME_DENY, response: undefined, error: err };
    else return { result: undefined, answer: UNAVAILABLE };
  }
  safely(() => options.onResult?.(result, req));
  const enforce = options.enforce ?? true;
  return { result, answer: enforce ? httpAnswer(result) : undefined };
}
