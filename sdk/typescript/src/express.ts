/**
 * Express middleware (tested with Express 5): ask the sidecar before the handler
 * runs; CHALLENGE → 401 with the RFC 9470 `WWW-Authenticate`, DENY → 403,
 * sidecar unavailable → the fail mode (503 by default), ALLOW → the handler,
 * with the result as `req.stepup`.
 *
 * ```ts
 * app.post("/refunds", stepUp({ client, context: (req) => ({ action: "payments.refund", ... }) }), handler);
 * ```
 */
import type { NextFunction, Request, RequestHandler, Response } from "express";
import { answerBytes, check, type StepUpOptions, type StepUpResult } from "./middleware.js";

export { httpAnswer, type FailMode, type HttpAnswer, type StepUpOptions, type StepUpResult } from "./middleware.js";

declare global {
  namespace Express {
    interface Request {
      /** The step-up check's result, set by the `stepUp` middleware. */
      stepup?: StepUpResult;
    }
  }
}

/** The middleware for `options`. */
export function stepUp(options: StepUpOptions<Request>): RequestHandler {
  return (req: Request, res: Response, next: NextFunction): void => {
    check(options, req).then(({ result, answer }) => {
      if (result !== undefined) req.stepup = result;
      if (answer === undefined) {
        next();
        return;
      }
      // The headers as they are (Express's `set` would add a charset to the
      // Content-Type) and the JSON body as bytes.
      res.status(answer.status);
      for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value);
      res.end(answerBytes(answer));
    }, next);
  };
}
