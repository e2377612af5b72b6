/**
 * `@stepup/client`: the Node client of the stepup step-up decision sidecar
 * (`stepup.v1.DecisionService` over gRPC), with the generated message types,
 * the errors, and helpers that read a verified JWT's claims.
 *
 * The framework middleware are in `@stepup/client/express` and
 * `@stepup/client/fastify`; the browser helper in `@stepup/client/browser`.
 */
export {
  StepUpClient,
  type CallEvent,
  type CallOptionsInit,
  type ClientHooks,
  type DecideBatchRequestInit,
  type DecideRequestInit,
  type RecordStepUpRequestInit,
  type RetryEvent,
  type StepUpClientOptions,
  type TlsOptions,
} from "./client.js";
export { GrpcStatus, StepUpError, type FieldViolation, type Method } from "./errors.js";
export { sessionFromClaims, subjectFromClaims, type JwtClaims, type SubjectClaims } from "./claims.js";
export { httpAnswer, type FailMode, type HttpAnswer, type StepUpOptions, type StepUpResult } from "./middleware.js";
export {
  Effect,
  Outcome,
  TraceEntry_Kind,
  type CombinedChallenge,
  type DecideBatchRequest,
  type DecideBatchResponse,
  type DecideRequest,
  type DecideResponse,
  type DeepPartial,
  type Device,
  type EvaluationError,
  type Network,
  type Reason,
  type RecordStepUpRequest,
  type RecordStepUpResponse,
  type Requirement,
  type Resource,
  type Risk,
  type Session,
  type ShadowResult,
  type Subject,
  type TraceEntry,
} from "./gen/stepup/v1/decision.js";
export type { Duration } from "./gen/google/protobuf/duration.js";
