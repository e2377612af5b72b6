/**
 * What the Express and Fastify middleware share: ask the sidecar, apply the
 * fail mode, and turn the result into the HTTP answer (401 with the RFC 9470
 * challenge, 403, 503) or a go-ahead.
 */
import type { StepUpClient, DecideRequestInit } from "./client.js";
import { StepUpError } from "./errors.js";
import { Outcome, type DecideResponse } from "./gen/stepup/v1/decision.js";

/**
 * What to do when the sidecar cannot answer (unreachable, too slow,
 * overloaded): `closed` answers 503 (the default), `deny` answers 403 as a
 * DENY would, `allow` lets the request go ahead (fail open: choose it only
 * for requests that are safe without a decision).
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
  /** Headers to set, e.g. `WWW-Authenticate`. */
  readonly headers: Readonly<Record<string, string>>;
  /** The JSON body. */
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

/** The answer for a result: 401 (CHALLENGE), 403 (DENY), or undefined to go ahead (ALLOW). */
export function httpAnswer(result: StepUpResult): HttpAnswer | undefined {
  const decisionId = result.response?.decisionId ?? "";
  switch (result.outcome) {
    case Outcome.OUTCOME_ALLOW:
      return undefined;
    case Outcome.OUTCOME_CHALLENGE: {
      const res = result.response;
      const body: Record<string, unknown> = { error: "insufficient_user_authentication" };
      if (res !== undefined && res.acrValues.length > 0) body["acr_values"] = res.acrValues.join(" ");
      if (res?.maxAge !== undefined) body["max_age"] = res.maxAge.seconds;
      body["decision_id"] = decisionId;
      const headers: Record<string, string> =
        res !== undefined && res.wwwAuthenticate !== "" ? { "WWW-Authenticate": res.wwwAuthenticate } : {};
      return { status: 401, headers, body };
    }
    default:
      // DENY, and any outcome this version does not know: refuse.
      return { status: 403, headers: {}, body: { error: "access_denied", decision_id: decisionId } };
  }
}

/** The 503 of fail mode `closed`. */
const UNAVAILABLE: HttpAnswer = {
  status: 503,
  headers: {},
  body: { error: "stepup_unavailable", error_description: "the authorization service did not answer" },
};

/** The 500 of a request the sidecar refused (a bug in the context function, never a fail-mode case). */
const FAILED: HttpAnswer = {
  status: 500,
  headers: {},
  body: { error: "stepup_error", error_description: "the authorization check failed" },
};

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
