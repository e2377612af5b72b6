/** The Express example app against a real sidecar over TCP. */
import type { AddressInfo } from "node:net";
import { createLocalJWKSet } from "jose";
import { createApp } from "../examples/express-app.js";
import { appScenario } from "./scenario.js";
import { AUDIENCE, ISSUER } from "./support.js";

appScenario("Express", "tcp", async ({ client, idp }) => {
  const app = createApp({ client, keys: createLocalJWKSet({ keys: [idp.publicJwk] }), issuer: ISSUER, audience: AUDIENCE });
  const server = await new Promise<import("node:http").Server>((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
});
