/** The Fastify example app against a real sidecar over a Unix socket. */
import { createLocalJWKSet } from "jose";
import { createApp } from "../examples/fastify-app.js";
import { appScenario } from "./scenario.js";
import { AUDIENCE, ISSUER } from "./support.js";

appScenario("Fastify", "unix", async ({ client, idp }) => {
  const app = createApp({ client, keys: createLocalJWKSet({ keys: [idp.publicJwk] }), issuer: ISSUER, audience: AUDIENCE });
  const url = await app.listen({ port: 0, host: "127.0.0.1" });
  return { url, close: () => app.close() };
});
