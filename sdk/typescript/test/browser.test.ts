/** The browser helper: RFC 9110 challenge parsing and the RFC 9470 authorization request. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { authorizationUrl, parseWwwAuthenticate, pkcePair, randomToken, stepUpChallenge } from "@stepup/client/browser";
import { REFUND_CHALLENGE } from "./scenario.js";

describe("parseWwwAuthenticate", () => {
  it("reads RFC 9110's own example: two challenges, a quoted-pair, a token value", () => {
    const got = parseWwwAuthenticate('Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"');
    assert.deepEqual(got, [
      { scheme: "Newauth", params: { realm: "apps", type: "1", title: 'Login to "apps"' } },
      { scheme: "Basic", params: { realm: "simple" } },
    ]);
  });

  it("keeps commas, equals signs and backslashes inside quoted strings", () => {
    const [ch] = parseWwwAuthenticate('Bearer error_description="a, b=c \\\\ d \\, e", realm=x');
    assert.deepEqual(ch?.params, { error_description: "a, b=c \\ d , e", realm: "x" });
  });

  it("takes names case-insensitively, whitespace around `=`, and empty list elements", () => {
    const got = parseWwwAuthenticate(' , ,Bearer   ERROR = "x" ,, Max_Age=\t"5" ,  , Basic ,');
    assert.deepEqual(got, [
      { scheme: "Bearer", params: { error: "x", max_age: "5" } },
      { scheme: "Basic", params: {} },
    ]);
  });

  it("tells a token68 from an auth-param", () => {
    const got = parseWwwAuthenticate("Negotiate YIIB3g+/ab==, Foo abc=, Bearer a=b");
    assert.deepEqual(got, [
      { scheme: "Negotiate", params: {}, token68: "YIIB3g+/ab==" },
      { scheme: "Foo", params: {}, token68: "abc=" },
      { scheme: "Bearer", params: { a: "b" } },
    ]);
  });

  it("joins several header lines", () => {
    const got = parseWwwAuthenticate(['Basic realm="a"', 'Bearer realm="b", scope="s t"']);
    assert.equal(got.length, 2);
    assert.deepEqual(got[1]?.params, { realm: "b", scope: "s t" });
  });

  it("keeps the first of a duplicated param", () => {
    const [ch] = parseWwwAuthenticate('Bearer error="insufficient_user_authentication", error="invalid_token"');
    assert.equal(ch?.params["error"], "insufficient_user_authentication");
  });

  for (const bad of [
    'Bearer error="unterminated',
    'Bearer error="x" realm="y"', // no comma between params
    "Bearer error=\"a\\",
    '="x"',
    'Bearer error="bad\u0001char"',
    "Bearer, =",
  ]) {
    it(`refuses malformed ${JSON.stringify(bad)}`, () => {
      assert.throws(() => parseWwwAuthenticate(bad), SyntaxError);
    });
  }
});

describe("stepUpChallenge", () => {
  it("reads the sidecar's header", () => {
    const ch = stepUpChallenge(REFUND_CHALLENGE);
    assert.deepEqual(ch?.acrValues, [
      "urn:stepup:aal2",
      "urn:okta:loa:2fa:any",
      "http://schemas.openid.net/pape/policies/2007/06/multi-factor",
    ]);
    assert.equal(ch?.maxAge, 300);
    assert.equal(ch?.errorDescription, "Refunds above 1,000 need re-verification");
  });

  it("finds the step-up among other challenges, other Bearer errors included", () => {
    const header =
      'Basic realm="x", Bearer error="invalid_token", DPoP algs="ES256 PS256", ' +
      'bearer realm="api", error=insufficient_user_authentication, acr_values="phr", max_age=0';
    const ch = stepUpChallenge(header);
    assert.deepEqual(ch?.acrValues, ["phr"]);
    assert.equal(ch?.maxAge, 0);
    assert.equal(ch?.params["realm"], "api");
  });

  it("leaves out a max_age that is not a non-negative integer, and an absent acr_values", () => {
    for (const v of ['"-1"', '"1e3"', '""', '"30s"', '" 30"', '"99999999999"']) {
      const ch = stepUpChallenge(`Bearer error="insufficient_user_authentication", max_age=${v}`);
      assert.equal(ch?.maxAge, undefined, v);
      assert.deepEqual(ch?.acrValues, []);
    }
  });

  it("is undefined for no step-up, no header, or a malformed one", () => {
    assert.equal(stepUpChallenge('Bearer error="invalid_token"'), undefined);
    assert.equal(stepUpChallenge('Basic error="insufficient_user_authentication"'), undefined);
    assert.equal(stepUpChallenge(null), undefined);
    assert.equal(stepUpChallenge(undefined), undefined);
    assert.equal(stepUpChallenge('Bearer error="insufficient_user_authentication'), undefined);
  });
});

describe("authorizationUrl", () => {
  const challenge = stepUpChallenge(REFUND_CHALLENGE)!;

  it("asks for the challenge's acr_values and max_age with the app's parameters", () => {
    const url = new URL(
      authorizationUrl(challenge, {
        authorizationEndpoint: "https://idp.example/oauth2/authorize?tenant=acme&acr_values=stale",
        clientId: "app",
        redirectUri: "https://app.example/callback",
        scope: "openid profile",
        state: "st",
        nonce: "no",
        codeChallenge: "cc",
        extraParams: { login_hint: "alice", max_age: "999999" },
      }),
    );
    assert.equal(url.origin + url.pathname, "https://idp.example/oauth2/authorize");
    assert.deepEqual(Object.fromEntries(url.searchParams), {
      tenant: "acme",
      acr_values: "urn:stepup:aal2 urn:okta:loa:2fa:any http://schemas.openid.net/pape/policies/2007/06/multi-factor",
      login_hint: "alice",
      max_age: "300",
      response_type: "code",
      client_id: "app",
      redirect_uri: "https://app.example/callback",
      scope: "openid profile",
      state: "st",
      nonce: "no",
      code_challenge: "cc",
      code_challenge_method: "S256",
    });
  });

  it("sends no acr_values or max_age the challenge does not ask for", () => {
    const ch = stepUpChallenge('Bearer error="insufficient_user_authentication"')!;
    const url = new URL(
      authorizationUrl(ch, {
        authorizationEndpoint: "https://idp.example/authorize",
        clientId: "app",
        redirectUri: "https://app.example/cb",
        state: "s",
        extraParams: { acr_values: "weak", max_age: "86400" },
      }),
    );
    assert.equal(url.searchParams.get("acr_values"), null);
    assert.equal(url.searchParams.get("max_age"), null);
    assert.equal(url.searchParams.get("scope"), "openid");
    assert.equal(url.searchParams.get("code_challenge_method"), null);
  });

  it("makes PKCE pairs and random tokens", async () => {
    const { verifier, challenge: cc } = await pkcePair();
    assert.match(verifier, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(cc, createHash("sha256").update(verifier).digest("base64url"));
    assert.notEqual(randomToken(), randomToken());
  });
});
