/**
 * The browser side of a step-up (RFC 9470): read the challenge from a 401's
 * `WWW-Authenticate` header and send the user to the identity provider with
 * an OpenID Connect authorization request that asks for it (`acr_values`,
 * `max_age`).
 *
 * No Node APIs: only `URL`, `URLSearchParams`, `TextEncoder` and Web Crypto,
 * which browsers, workers, Deno, Bun and Node (20+) all have.
 *
 * ```ts
 * const res = await fetch("/refunds", { method: "POST", ... });
 * const challenge = res.status === 401 ? stepUpChallenge(res.headers.get("WWW-Authenticate")) : undefined;
 * if (challenge) location.assign(authorizationUrl(challenge, { authorizationEndpoint, clientId, redirectUri, state, nonce, codeChallenge }));
 * ```
 */

/** One challenge of a `WWW-Authenticate` header (RFC 9110 section 11.6.1). */
export interface Challenge {
  /** The auth scheme as sent, e.g. `Bearer` (compare it case-insensitively). */
  readonly scheme: string;
  /** The auth-params, names in lower case (they are case-insensitive), values unquoted. */
  readonly params: Readonly<Record<string, string>>;
  /** The token68 form (e.g. `Basic`'s credentials), when the challenge has one instead of params. */
  readonly token68?: string;
}

/** An RFC 9470 step-up challenge: `Bearer error="insufficient_user_authentication"`. */
export interface StepUpChallenge {
  /** The acr values to ask the identity provider for (`acr_values`, space-separated in the header). */
  readonly acrValues: readonly string[];
  /** How recent the authentication must be, in seconds (`max_age`); undefined when not asked. */
  readonly maxAge: number | undefined;
  /** The server's explanation for the user (`error_description`), when given. */
  readonly errorDescription: string | undefined;
  /** All params of the challenge (e.g. `realm`, `scope`). */
  readonly params: Readonly<Record<string, string>>;
}

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
const TOKEN68_CHAR = /[A-Za-z0-9\-._~+/]/;

/** A cursor over a header value, following RFC 9110's grammar. */
class Cursor {
  pos = 0;
  constructor(readonly text: string) {}
  get done(): boolean {
    return this.pos >= this.text.length;
  }
  peek(): string {
    return this.text.charAt(this.pos);
  }
  fail(what: string): never {
    throw new SyntaxError(`WWW-Authenticate: ${what} at character ${this.pos}`);
  }
  /** Skips optional whitespace (OWS/BWS: spaces and tabs). */
  ows(): void {
    while (this.peek() === " " || this.peek() === "\t") this.pos++;
  }
  token(): string {
    const start = this.pos;
    while (!this.done && TCHAR.test(this.peek())) this.pos++;
    return this.text.slice(start, this.pos);
  }
  quoted(): string {
    // At the opening DQUOTE.
    this.pos++;
    let out = "";
    for (;;) {
      if (this.done) this.fail("unterminated quoted-string");
      const c = this.peek();
      const code = c.charCodeAt(0);
      if (c === '"') {
        this.pos++;
        return out;
      }
      if (c === "\\") {
        this.pos++;
        if (this.done) this.fail("unterminated quoted-pair");
        const q = this.peek().charCodeAt(0);
        // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
        if (!(q === 0x09 || (q >= 0x20 && q !== 0x7f && q <= 0xff))) this.fail("invalid quoted-pair");
        out += this.peek();
        this.pos++;
        continue;
      }
      // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
      if (!(code === 0x09 || (code >= 0x20 && code !== 0x7f && code <= 0xff))) this.fail("invalid character in quoted-string");
      out += c;
      this.pos++;
    }
  }
  /** Skips list separators: OWS, commas, OWS (empty list elements are allowed, RFC 9110 section 5.6.1). Returns whether a comma was seen. */
  commas(): boolean {
    let seen = false;
    this.ows();
    while (this.peek() === ",") {
      seen = true;
      this.pos++;
      this.ows();
    }
    return seen;
  }
}

/**
 * Whether an auth-param (`token BWS "=" BWS value`) starts at the cursor, as
 * opposed to a new challenge's scheme or a token68.
 */
function paramAhead(c: Cursor): boolean {
  const save = c.pos;
  try {
    if (c.token() === "") return false;
    c.ows();
    if (c.peek() !== "=") return false;
    c.pos++;
    c.ows();
    // `name=` then a token or quoted-string is a param; `abc==` or `abc=` at a
    // list end is a token68.
    const next = c.peek();
    return next === '"' || (next !== "" && next !== "=" && TCHAR.test(next));
  } finally {
    c.pos = save;
  }
}

/**
 * All challenges of a `WWW-Authenticate` value, or of several header lines
 * (an array, or the comma-joined string `Headers.get` returns). Throws a
 * SyntaxError when the value does not follow RFC 9110's grammar.
 */
export function parseWwwAuthenticate(header: string | readonly string[]): Challenge[] {
  const c = new Cursor(typeof header === "string" ? header : header.join(", "));
  const out: Challenge[] = [];
  c.commas();
  while (!c.done) {
    const scheme = c.token();
    if (scheme === "") c.fail("expected an auth-scheme");
    const params: Record<string, string> = {};
    let token68: string | undefined;
    const hadSpace = c.peek() === " " || c.peek() === "\t";
    c.ows();
    if (hadSpace && !c.done && c.peek() !== ",") {
      if (paramAhead(c)) {
        // #auth-param, until the next challenge (a token not followed by "=").
        for (;;) {
          const name = c.token().toLowerCase();
          c.ows();
          c.pos++; // "=", as paramAhead saw
          c.ows();
          const value = c.peek() === '"' ? c.quoted() : c.token();
          // A param given twice is malformed (RFC 9110): keep the first.
          if (!Object.hasOwn(params, name)) params[name] = value;
          const comma = c.commas();
          if (c.done) break;
          if (!comma) c.fail("expected a comma");
          if (!paramAhead(c)) break;
        }
      } else {
        const start = c.pos;
        while (!c.done && TOKEN68_CHAR.test(c.peek())) c.pos++;
        if (c.pos === start) c.fail("expected a token68 or auth-param");
        while (c.peek() === "=") c.pos++;
        token68 = c.text.slice(start, c.pos);
        const comma = c.commas();
        if (!c.done && !comma) c.fail("expected a comma");
      }
    } else if (!c.commas() && !c.done) {
      c.fail("expected a comma");
    }
    out.push(token68 === undefined ? { scheme, params } : { scheme, params, token68 });
  }
  return out;
}

/**
 * The RFC 9470 step-up challenge of a 401's `WWW-Authenticate` header: the
 * first `Bearer` challenge with `error="insufficient_user_authentication"`.
 * Undefined when there is none, or when the header does not parse.
 */
export function stepUpChallenge(header: string | readonly string[] | null | undefined): StepUpChallenge | undefined {
  if (header === null || header === undefined) return undefined;
  let challenges: Challenge[];
  try {
    challenges = parseWwwAuthenticate(header);
  } catch {
    return undefined;
  }
  const found = challenges.find(
    (ch) => ch.scheme.toLowerCase() === "bearer" && ch.params["error"] === "insufficient_user_authentication",
  );
  if (found === undefined) return undefined;
  const acr = found.params["acr_values"];
  const maxAge = found.params["max_age"];
  return {
    acrValues: acr === undefined ? [] : acr.split(" ").filter((v) => v !== ""),
    // Seconds, a non-negative integer; anything else is not a max_age.
    maxAge: maxAge !== undefined && /^[0-9]{1,10}$/.test(maxAge) ? Number(maxAge) : undefined,
    errorDescription: found.params["error_description"],
    params: found.params,
  };
}

/** The application's side of the authorization request. */
export interface AuthorizationRequest {
  /** The identity provider's `authorization_endpoint` (from its discovery document). */
  readonly authorizationEndpoint: string;
  /** The application's `client_id`. */
  readonly clientId: string;
  /** The `redirect_uri` registered for the application. */
  readonly redirectUri: string;
  /** The `scope`; default `openid`. */
  readonly scope?: string;
  /** The `state`: an unguessable value the callback checks (CSRF). */
  readonly state: string;
  /** The OpenID Connect `nonce`, checked in the new ID token. */
  readonly nonce?: string;
  /** The PKCE `code_challenge` (RFC 7636), e.g. from `pkcePair()`. */
  readonly codeChallenge?: string;
  /** The PKCE `code_challenge_method`; default `S256` when `codeChallenge` is given. */
  readonly codeChallengeMethod?: string;
  /** The `response_type`; default `code`. */
  readonly responseType?: string;
  /** More parameters, e.g. `login_hint`, `prompt`, `ui_locales`. The step-up's own win over these. */
  readonly extraParams?: Readonly<Record<string, string>>;
}

/**
 * The OpenID Connect authorization request URL that asks for the
 * challenge's `acr_values` and `max_age` (RFC 9470 section 4), with the
 * application's parameters. Parameters already in the endpoint's query are
 * kept unless set here.
 */
export function authorizationUrl(challenge: StepUpChallenge, request: AuthorizationRequest): string {
  const url = new URL(request.authorizationEndpoint);
  const q = url.searchParams;
  for (const [k, v] of Object.entries(request.extraParams ?? {})) q.set(k, v);
  q.set("response_type", request.responseType ?? "code");
  q.set("client_id", request.clientId);
  q.set("redirect_uri", request.redirectUri);
  q.set("scope", request.scope ?? "openid");
  q.set("state", request.state);
  if (request.nonce !== undefined) q.set("nonce", request.nonce);
  if (request.codeChallenge !== undefined) {
    q.set("code_challenge", request.codeChallenge);
    q.set("code_challenge_method", request.codeChallengeMethod ?? "S256");
  }
  if (challenge.acrValues.length > 0) q.set("acr_values", challenge.acrValues.join(" "));
  else q.delete("acr_values");
  if (challenge.maxAge !== undefined) q.set("max_age", String(challenge.maxAge));
  else q.delete("max_age");
  return url.toString();
}

function base64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A random URL-safe value of `bytes` random bytes (for `state` and `nonce`). */
export function randomToken(bytes = 32): string {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** A PKCE pair (RFC 7636, S256): keep `verifier` for the token request, send `challenge`. */
export async function pkcePair(): Promise<{ verifier: string; challenge: string }> {
  const verifier = randomToken(32);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return { verifier, challenge: base64url(new Uint8Array(digest)) };
}
