/**
 * The session and subject of a DecideRequest from a verified JWT's claims
 * (an OpenID Connect ID token, or an access token carrying the same claims).
 *
 * These helpers do not verify anything: pass the claims your verifier
 * returned (e.g. `(await jwtVerify(token, jwks)).payload` with `jose`).
 * A claim of the wrong type is left out, which the sidecar reads as
 * "not known": no requirement is met by it (fail closed).
 */
import type { DeepPartial, Session, Subject } from "./gen/stepup/v1/decision.js";

/** A JWT claims set, as verifiers return it. */
export interface JwtClaims {
  readonly [claim: string]: unknown;
}

function str(v: unknown): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined;
}

function strings(v: unknown): string[] | undefined {
  return Array.isArray(v) ? v.filter((s): s is string => typeof s === "string" && s !== "") : undefined;
}

/**
 * The session of the token: `sid` → `id`, `acr`, `amr` (an array of RFC
 * 8176 values; a single string is taken as one value), `auth_time`
 * (seconds since the epoch) → `authTime`.
 */
export function sessionFromClaims(claims: JwtClaims): DeepPartial<Session> {
  const session: DeepPartial<Session> = {};
  const id = str(claims["sid"]);
  if (id !== undefined) session.id = id;
  const acr = str(claims["acr"]);
  if (acr !== undefined) session.acr = acr;
  const amrClaim = claims["amr"];
  const amr = typeof amrClaim === "string" ? strings([amrClaim]) : strings(amrClaim);
  if (amr !== undefined) session.amr = amr;
  const authTime = claims["auth_time"];
  if (typeof authTime === "number" && Number.isFinite(authTime) && authTime >= 0) {
    session.authTime = new Date(authTime * 1000);
  }
  return session;
}

/** Where `subjectFromClaims` finds the tenant and the roles. */
export interface SubjectClaims {
  /** The claim naming the subject; default `sub`. */
  readonly idClaim?: string;
  /** The claim naming the tenant (e.g. `tid`, `org_id`); default none. */
  readonly tenantClaim?: string;
  /** The claim listing roles (e.g. `roles`, `groups`); default none. */
  readonly rolesClaim?: string;
}

/** The subject of the token: `sub` (or `idClaim`) → `id`, and the tenant and roles where configured. */
export function subjectFromClaims(claims: JwtClaims, where: SubjectClaims = {}): DeepPartial<Subject> {
  const subject: DeepPartial<Subject> = {};
  const id = str(claims[where.idClaim ?? "sub"]);
  if (id !== undefined) subject.id = id;
  if (where.tenantClaim !== undefined) {
    const tenant = str(claims[where.tenantClaim]);
    if (tenant !== undefined) subject.tenant = tenant;
  }
  if (where.rolesClaim !== undefined) {
    const roles = strings(claims[where.rolesClaim]);
    if (roles !== undefined) subject.roles = roles;
  }
  return subject;
}
