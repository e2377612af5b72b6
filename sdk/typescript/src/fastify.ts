/**
 * Fastify hook (tested with Fastify 5): ask the sidecar before the handler runs;
 * CHALLENGE → 401 with the RFC 9470 `WWW-Authenticate`, DENY → 403, sidecar
 * unavailable → the fail mode (503 by default), ALLOW → the handler, with
 * the result as `request.stepup`.
 *
 * ```ts
 * app.post("/refunds", { preHandler: stepUpHook({ client, context: (req) => ({ ... }) }) }, handler);
 * ```
 *
 * As a `preHandler` the body is parsed already, so the context function can
 * read it (a refund's amount).
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { answerBytes, check, type StepUpOptions, type StepUpResult } from "./middleware.js";

export { httpAnswer, type FailMode, type HttpAnswer, type StepUpOptions, type StepUpResult } from "./middleware.js";

declare module "fastify" {
  interface FastifyRequest {
    /** The step-up check's result, set by `stepUpHook`. */
    stepup?: StepUpResult;
  }
}

/** The `preHandler` (or `onRequest`) hook for `options`. */
export function stepUpHook(
  options: StepUpOptions<FastifyRequest>,
): (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply | undefined> {
  return async (request, reply) => {
    const { result, answer } = await check(options, request);
    if (result !== undefined) request.stepup = result;
    if (answer === undefined) return undefined;
    // Returning the reply after `send` ends the hook chain: the handler does not run.
    // The body as bytes: Fastify sends a Buffer with the Content-Type as set
    // (it would add a charset to a serialized object's).
    return reply.code(answer.status).headers(answer.headers).send(answerBytes(answer));
  };
}
