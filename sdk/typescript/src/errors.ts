/**
 * Errors of the stepup client: the gRPC status, and the `google.rpc.ErrorInfo`
 * and `google.rpc.BadRequest` details stepup sends in `grpc-status-details-bin`.
 *
 * The details are decoded here by hand (three small, frozen messages of
 * `google/rpc/status.proto` and `error_details.proto`) rather than generated,
 * so that a detail that does not decode never hides the status itself.
 */
import { status as GrpcStatus, type Metadata, type ServiceError } from "@grpc/grpc-js";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

/** The gRPC status codes, re-exported so callers need not import grpc-js. */
export { GrpcStatus };

/** One invalid field of a request (`google.rpc.BadRequest.FieldViolation`). */
export interface FieldViolation {
  /** The field's path by its proto names, e.g. `session.auth_time`. */
  readonly field: string;
  /** What is wrong with it. */
  readonly description: string;
}

/** The RPC methods of `stepup.v1.DecisionService`. */
export type Method = "Decide" | "DecideBatch" | "RecordStepUp";

/**
 * Status codes meaning the sidecar did not answer in time or could not take
 * the call: unreachable, too slow, overloaded, shutting down. Only these are
 * answered by a middleware's fail mode; every other error is a bug in the
 * request and fails closed whatever the fail mode says.
 */
const UNAVAILABLE_CODES: ReadonlySet<GrpcStatus> = new Set([
  GrpcStatus.UNAVAILABLE,
  GrpcStatus.DEADLINE_EXCEEDED,
  GrpcStatus.RESOURCE_EXHAUSTED,
  GrpcStatus.CANCELLED,
]);

/** A failed call to the stepup sidecar. */
export class StepUpError extends Error {
  override readonly name = "StepUpError";
  /** The method that failed. */
  readonly method: Method;
  /** The gRPC status code. */
  readonly code: GrpcStatus;
  /** The status message (the server's words, or grpc-js's for transport errors). */
  readonly details: string;
  /**
   * The `google.rpc.ErrorInfo` reason, e.g. `INVALID_FIELD`, `OVERLOADED`,
   * `EVIDENCE_EXPIRED`; undefined for errors without details (transport
   * errors, deadlines, an unreachable sidecar).
   */
  readonly reason: string | undefined;
  /** The ErrorInfo domain (`stepup`), when there is one. */
  readonly domain: string | undefined;
  /** The ErrorInfo metadata, e.g. `{ field: "subject.id" }`. */
  readonly metadata: Readonly<Record<string, string>>;
  /** The `google.rpc.BadRequest` field violations (for `INVALID_FIELD`). */
  readonly fieldViolations: readonly FieldViolation[];
  /** The number of attempts made (more than 1 after retries). */
  readonly attempts: number;

  constructor(init: {
    method: Method;
    code: GrpcStatus;
    details: string;
    reason?: string | undefined;
    domain?: string | undefined;
    metadata?: Record<string, string>;
    fieldViolations?: FieldViolation[];
    attempts?: number;
    cause?: unknown;
  }) {
    const reason = init.reason === undefined ? "" : ` [${init.reason}]`;
    super(`stepup ${init.method}: ${GrpcStatus[init.code] ?? init.code}${reason}: ${init.details}`, {
      cause: init.cause,
    });
    this.method = init.method;
    this.code = init.code;
    this.details = init.details;
    this.reason = init.reason;
    this.domain = init.domain;
    this.metadata = Object.freeze({ ...(init.metadata ?? {}) });
    this.fieldViolations = Object.freeze([...(init.fieldViolations ?? [])]);
    this.attempts = init.attempts ?? 1;
  }

  /**
   * True when the sidecar was unreachable, too slow, overloaded or shutting
   * down (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, CANCELLED):
   * the errors a fail mode may answer.
   */
  get unavailable(): boolean {
    return UNAVAILABLE_CODES.has(this.code);
  }

  /** The same error, counting `attempts` attempts. */
  withAttempts(attempts: number): StepUpError {
    return new StepUpError({
      method: this.method,
      code: this.code,
      details: this.details,
      reason: this.reason,
      domain: this.domain,
      metadata: { ...this.metadata },
      fieldViolations: [...this.fieldViolations],
      attempts,
      cause: this.cause,
    });
  }
}

const ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo";
const BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest";

interface Any {
  typeUrl: string;
  value: Uint8Array;
}

/** The `details` of a `google.rpc.Status` (fields 1 `code` and 2 `message` are in the gRPC status already). */
function decodeStatusDetails(bytes: Uint8Array): Any[] {
  const r = new BinaryReader(bytes);
  const out: Any[] = [];
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 3 && wire === WireType.LengthDelimited) {
      out.push(decodeAny(r.bytes()));
    } else {
      r.skip(wire, field);
    }
  }
  return out;
}

function decodeAny(bytes: Uint8Array): Any {
  const r = new BinaryReader(bytes);
  const any: Any = { typeUrl: "", value: new Uint8Array() };
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 1 && wire === WireType.LengthDelimited) any.typeUrl = r.string();
    else if (field === 2 && wire === WireType.LengthDelimited) any.value = r.bytes();
    else r.skip(wire, field);
  }
  return any;
}

interface ErrorInfo {
  reason: string;
  domain: string;
  metadata: Record<string, string>;
}

function decodeErrorInfo(bytes: Uint8Array): ErrorInfo {
  const r = new BinaryReader(bytes);
  const info: ErrorInfo = { reason: "", domain: "", metadata: {} };
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 1 && wire === WireType.LengthDelimited) info.reason = r.string();
    else if (field === 2 && wire === WireType.LengthDelimited) info.domain = r.string();
    else if (field === 3 && wire === WireType.LengthDelimited) {
      const [key, value] = decodePair(r.bytes());
      info.metadata[key] = value;
    } else r.skip(wire, field);
  }
  return info;
}

/** A map entry (`key` = 1, `value` = 2), or a FieldViolation's `field` and `description`. */
function decodePair(bytes: Uint8Array): [string, string] {
  const r = new BinaryReader(bytes);
  let first = "";
  let second = "";
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 1 && wire === WireType.LengthDelimited) first = r.string();
    else if (field === 2 && wire === WireType.LengthDelimited) second = r.string();
    else r.skip(wire, field);
  }
  return [first, second];
}

function decodeBadRequest(bytes: Uint8Array): FieldViolation[] {
  const r = new BinaryReader(bytes);
  const out: FieldViolation[] = [];
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 1 && wire === WireType.LengthDelimited) {
      const [f, description] = decodePair(r.bytes());
      out.push({ field: f, description });
    } else r.skip(wire, field);
  }
  return out;
}

/** The ErrorInfo and BadRequest details of an error's trailers (none when absent or undecodable). */
export function statusDetails(metadata: Metadata | undefined): {
  info: ErrorInfo | undefined;
  fieldViolations: FieldViolation[];
} {
  let info: ErrorInfo | undefined;
  const fieldViolations: FieldViolation[] = [];
  for (const value of metadata?.get("grpc-status-details-bin") ?? []) {
    if (typeof value === "string") continue;
    try {
      for (const any of decodeStatusDetails(value)) {
        if (any.typeUrl === ERROR_INFO && info === undefined) info = decodeErrorInfo(any.value);
        else if (any.typeUrl === BAD_REQUEST) fieldViolations.push(...decodeBadRequest(any.value));
      }
    } catch {
      // Undecodable details: the status code and message still say what failed.
    }
  }
  return { info, fieldViolations };
}

function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === "number";
}

/** The StepUpError for what a grpc-js call failed with. */
export function toStepUpError(method: Method, err: unknown): StepUpError {
  if (err instanceof StepUpError) return err;
  if (!isServiceError(err)) {
    return new StepUpError({
      method,
      code: GrpcStatus.INTERNAL,
      details: err instanceof Error ? err.message : String(err),
      cause: err,
    });
  }
  const { info, fieldViolations } = statusDetails(err.metadata);
  return new StepUpError({
    method,
    code: err.code,
    details: err.details,
    reason: info?.reason || undefined,
    domain: info?.domain || undefined,
    metadata: info?.metadata ?? {},
    fieldViolations,
    cause: err,
  });
}
