/**
 * The Node client of the stepup sidecar (`stepup.v1.DecisionService`) on
 * `@grpc/grpc-js`: TCP, TLS or mutual TLS, or a Unix socket; a deadline on
 * every call; retries only where they are safe; hooks for metrics.
 */
import {
  credentials as grpcCredentials,
  Metadata,
  status as GrpcStatus,
  type CallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  type ClientUnaryCall,
  type ServiceError,
} from "@grpc/grpc-js";
import {
  DecideBatchRequest,
  DecideRequest,
  DecisionServiceClient,
  RecordStepUpRequest,
  type DecideBatchResponse,
  type DecideResponse,
  type DeepPartial,
  type Outcome,
  type RecordStepUpResponse,
} from "./gen/stepup/v1/decision.js";
import { StepUpError, toStepUpError, type Method } from "./errors.js";

/** A DecideRequest to send: every field optional, as in proto3 (unset is the default). */
export type DecideRequestInit = DeepPartial<DecideRequest>;
/** A RecordStepUpRequest to send. */
export type RecordStepUpRequestInit = DeepPartial<RecordStepUpRequest>;
/** A DecideBatchRequest to send. */
export type DecideBatchRequestInit = DeepPartial<DecideBatchRequest>;

/** TLS to the sidecar. PEM strings or buffers. */
export interface TlsOptions {
  /** CA certificates to trust (PEM); absent: the system's roots. */
  readonly ca?: string | Buffer;
  /** The client certificate chain (PEM) for mutual TLS; needs `key`. */
  readonly cert?: string | Buffer;
  /** The client certificate's private key (PEM); needs `cert`. */
  readonly key?: string | Buffer;
  /**
   * The name to verify the server certificate against (and send as SNI and
   * `:authority`) when it differs from the target's host, e.g. `stepup` when
   * dialling `127.0.0.1:7171`.
   */
  readonly serverName?: string;
}

/** What a hook learns of each finished call (after its retries). */
export interface CallEvent {
  /** The method called. */
  readonly method: Method;
  /** Wall time of the whole call, retries and backoff included, in milliseconds. */
  readonly durationMs: number;
  /** Attempts made (1 without retries). */
  readonly attempts: number;
  /** For a successful Decide: the outcome. */
  readonly outcome?: Outcome;
  /** For a failed call: why. */
  readonly error?: StepUpError;
}

/** What a hook learns of each retry. */
export interface RetryEvent {
  /** The method retried. */
  readonly method: Method;
  /** The attempt that failed (1 for the first). */
  readonly attempt: number;
  /** Why it failed. */
  readonly error: StepUpError;
}

/**
 * Metrics hooks: count decisions, errors and retries in the service's own
 * telemetry. A hook that throws is ignored (it never fails the call).
 */
export interface ClientHooks {
  /** After every call, successful or not. */
  onCall?(event: CallEvent): void;
  /** Before every retry. */
  onRetry?(event: RetryEvent): void;
}

/** How to reach the sidecar and how to call it. */
export interface StepUpClientOptions {
  /**
   * The sidecar's address: `host:port` (e.g. `127.0.0.1:7171`), a gRPC URI
   * such as `dns:///stepup.internal:7171`, or a Unix socket `unix:/path`
   * (absolute) or `unix:relative/path`.
   */
  readonly target: string;
  /** TLS settings; absent: plaintext (fine on loopback and Unix sockets). */
  readonly tls?: TlsOptions;
  /**
   * The deadline of each call, retries included, in milliseconds. Default
   * 500: the sidecar answers from memory, so a slower answer means it is
   * overloaded or gone, and the caller's fail mode should take over.
   */
  readonly timeoutMs?: number;
  /**
   * Retries of a Decide or DecideBatch that the sidecar certainly did not
   * run, within the deadline. Default 2. Only two failures are retried:
   * UNAVAILABLE before any HTTP/2 stream was opened for the call (grpc-js
   * found no connection to send it on: connection refused, no such socket,
   * name resolution or the TLS handshake failed), and UNAVAILABLE with the
   * `google.rpc.ErrorInfo` reason `SHUTTING_DOWN` (domain `stepup`: the
   * sidecar stopped before running the call), which stepup sends in the
   * `grpc-status-details-bin` trailer. Never a
   * connection that broke once the call was sent, DEADLINE_EXCEEDED or
   * RESOURCE_EXHAUSTED: the sidecar may have decided and recorded the
   * request in its history (refund counts and the like), which a retry
   * would count twice. RecordStepUp is never retried.
   */
  readonly retries?: number;
  /** The first retry's backoff in milliseconds, doubled for each next one (with jitter). Default 20. */
  readonly retryBackoffMs?: number;
  /** Metrics hooks. */
  readonly hooks?: ClientHooks;
  /** Extra grpc-js channel options (they override the client's). */
  readonly channelOptions?: ChannelOptions;
}

/** Per-call options. */
export interface CallOptionsInit {
  /** This call's deadline in milliseconds (instead of the client's `timeoutMs`). */
  readonly timeoutMs?: number;
  /** Cancels the call (it then fails with CANCELLED). */
  readonly signal?: AbortSignal;
  /** Extra request metadata (gRPC headers), e.g. a trace context. */
  readonly metadata?: Readonly<Record<string, string>>;
}

const DEFAULT_TIMEOUT_MS = 500;
const DEFAULT_RETRIES = 2;
const DEFAULT_BACKOFF_MS = 20;

type Invoke<Res> = (
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/** Channel credentials and options for a target. */
function channelSetup(options: StepUpClientOptions): {
  credentials: ChannelCredentials;
  channelOptions: ChannelOptions;
} {
  const channelOptions: ChannelOptions = {
    // No service config from DNS TXT records: one could turn on grpc-js's
    // own retries of Decide, which would run it twice after a connection
    // broke mid-call. The client retries what is safe itself.
    "grpc.service_config_disable_resolution": 1,
  };
  if (options.target.startsWith("unix:")) {
    // stepup refuses a request whose :authority is not a host name; some
    // grpc-js versions send the socket path as the authority.
    channelOptions["grpc.default_authority"] = "localhost";
  }
  let credentials: ChannelCredentials;
  const tls = options.tls;
  if (tls === undefined) {
    credentials = grpcCredentials.createInsecure();
  } else {
    if ((tls.cert === undefined) !== (tls.key === undefined)) {
      throw new TypeError("stepup client: `tls.cert` and `tls.key` go together (mutual TLS needs both)");
    }
    const pem = (v: string | Buffer | undefined): Buffer | null =>
      v === undefined ? null : typeof v === "string" ? Buffer.from(v) : v;
    credentials = grpcCredentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert));
    if (tls.serverName !== undefined) {
      channelOptions["grpc.ssl_target_name_override"] = tls.serverName;
      channelOptions["grpc.default_authority"] = tls.serverName;
    }
  }
  return { credentials, channelOptions: { ...channelOptions, ...options.channelOptions } };
}

/** How one attempt ended. */
type Attempt<Res> =
  | { readonly ok: true; readonly response: Res }
  | {
      readonly ok: false;
      readonly error: StepUpError;
      /**
       * Whether grpc-js opened an HTTP/2 stream for the call: from then on
       * the request may have reached the sidecar.
       */
      readonly streamOpened: boolean;
    };

/**
 * True when a failed attempt may be made again without the sidecar running
 * the request twice: UNAVAILABLE before grpc-js opened a stream for it (the
 * request was never sent), or UNAVAILABLE `SHUTTING_DOWN` from stepup (it
 * stopped before running the call).
 */
function retryIsSafe(error: StepUpError, streamOpened: boolean): boolean {
  if (error.code !== GrpcStatus.UNAVAILABLE) return false;
  if (!streamOpened) return true;
  return error.reason === "SHUTTING_DOWN" && error.domain === "stepup";
}

function safely(hook: (() => void) | undefined): void {
  try {
    hook?.();
  } catch {
    // A metrics hook must never change the call's result.
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A client of one stepup sidecar. Create one per process and reuse it: it keeps one HTTP/2 connection. */
export class StepUpClient {
  readonly #client: DecisionServiceClient;
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #backoffMs: number;
  readonly #hooks: ClientHooks;
  /** The channel's target as grpc-js spells it (e.g. `dns:127.0.0.1:7171`). */
  readonly #channelTarget: string;

  constructor(options: StepUpClientOptions) {
    const { credentials, channelOptions } = channelSetup(options);
    this.#client = new DecisionServiceClient(options.target, credentials, channelOptions);
    this.#channelTarget = this.#client.getChannel().getTarget();
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#retries = Math.max(0, Math.floor(options.retries ?? DEFAULT_RETRIES));
    this.#backoffMs = options.retryBackoffMs ?? DEFAULT_BACKOFF_MS;
    this.#hooks = options.hooks ?? {};
    if (!(this.#timeoutMs > 0)) throw new TypeError("stepup client: `timeoutMs` must be above 0");
  }

  /**
   * Asks whether the request may go ahead. Resolves to the decision (ALLOW,
   * CHALLENGE or DENY); rejects with a StepUpError when the sidecar does not
   * answer in time or refuses the request. Retried only when the sidecar
   * certainly did not run it (see `retries`).
   */
  decide(request: DecideRequestInit, options?: CallOptionsInit): Promise<DecideResponse> {
    const message = DecideRequest.fromPartial(request);
    return this.#unary<DecideResponse>(
      "Decide",
      true,
      (md, opts, cb) => this.#client.decide(message, md, opts, cb),
      options,
      (res) => res.outcome,
    );
  }

  /** Decides up to 100 requests in one call (see the proto). Retried like `decide`. */
  decideBatch(request: DecideBatchRequestInit, options?: CallOptionsInit): Promise<DecideBatchResponse> {
    const message = DecideBatchRequest.fromPartial(request);
    return this.#unary<DecideBatchResponse>(
      "DecideBatch",
      true,
      (md, opts, cb) => this.#client.decideBatch(message, md, opts, cb),
      options,
    );
  }

  /**
   * Reports a step-up's outcome, best with the step-up's signed token as
   * `evidence` (the sidecar verifies it against `[[trust.issuers]]`). Never
   * retried: on an error, the caller decides whether to report again.
   */
  recordStepUp(request: RecordStepUpRequestInit, options?: CallOptionsInit): Promise<RecordStepUpResponse> {
    const message = RecordStepUpRequest.fromPartial(request);
    return this.#unary<RecordStepUpResponse>(
      "RecordStepUp",
      false,
      (md, opts, cb) => this.#client.recordStepUp(message, md, opts, cb),
      options,
    );
  }

  /** Resolves once the channel is connected, or rejects after `timeoutMs` (default: the client's). */
  waitForReady(timeoutMs?: number): Promise<void> {
    const deadline = Date.now() + (timeoutMs ?? this.#timeoutMs);
    return new Promise((resolve, reject) => {
      this.#client.waitForReady(deadline, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Closes the channel; calls in flight fail. */
  close(): void {
    this.#client.close();
  }

  async #unary<Res>(
    method: Method,
    retryable: boolean,
    invoke: Invoke<Res>,
    options: CallOptionsInit | undefined,
    outcomeOf?: (res: Res) => Outcome,
  ): Promise<Res> {
    const started = performance.now();
    const deadline = Date.now() + (options?.timeoutMs ?? this.#timeoutMs);
    const maxAttempts = retryable ? 1 + this.#retries : 1;
    for (let attempt = 1; ; attempt++) {
      const result = await this.#once(method, invoke, deadline, options);
      if (result.ok) {
        const outcome = outcomeOf?.(result.response);
        safely(() =>
          this.#hooks.onCall?.({
            method,
            durationMs: performance.now() - started,
            attempts: attempt,
            ...(outcome === undefined ? {} : { outcome }),
          }),
        );
        return result.response;
      }
      const error = result.error.withAttempts(attempt);
      const backoff = this.#backoffMs * 2 ** (attempt - 1) * (0.5 + Math.random() / 2);
      const again =
        attempt < maxAttempts &&
        retryIsSafe(error, result.streamOpened) &&
        options?.signal?.aborted !== true &&
        Date.now() + backoff < deadline;
      if (again) {
        safely(() => this.#hooks.onRetry?.({ method, attempt, error }));
        await sleep(backoff);
        continue;
      }
      safely(() =>
        this.#hooks.onCall?.({ method, durationMs: performance.now() - started, attempts: attempt, error }),
      );
      throw error;
    }
  }

  /** One attempt; it never rejects. */
  #once<Res>(
    method: Method,
    invoke: Invoke<Res>,
    deadline: number,
    options: CallOptionsInit | undefined,
  ): Promise<Attempt<Res>> {
    return new Promise<Attempt<Res>>((resolve) => {
      const signal = options?.signal;
      if (signal?.aborted) {
        const error = new StepUpError({ method, code: GrpcStatus.CANCELLED, details: "cancelled before the call" });
        resolve({ ok: false, error, streamOpened: false });
        return;
      }
      const metadata = new Metadata();
      for (const [k, v] of Object.entries(options?.metadata ?? {})) metadata.set(k, v);
      const onAbort = (): void => call.cancel();
      let call: ClientUnaryCall;
      try {
        call = invoke(metadata, { deadline }, (error, response) => {
          signal?.removeEventListener("abort", onAbort);
          if (!error) {
            resolve({ ok: true, response });
            return;
          }
          // grpc-js names the connection's remote address as the call's
          // peer once it has opened an HTTP/2 stream for it (which it does
          // only on a connection whose server sent its HTTP/2 SETTINGS);
          // until then (the pick failed: no connection, name resolution
          // failed) the peer is the channel's target. Any other peer counts
          // as opened: never retried but for SHUTTING_DOWN.
          const streamOpened = call.getPeer() !== this.#channelTarget;
          resolve({ ok: false, error: toStepUpError(method, error), streamOpened });
        });
      } catch (err) {
        // grpc-js refused to start the call: nothing was sent.
        resolve({ ok: false, error: toStepUpError(method, err), streamOpened: false });
        return;
      }
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}
