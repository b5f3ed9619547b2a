/**
 * The public HTTP front: CORS, and one catch-all that hands the Web Request to the transcoder
 * (which also enforces the body limit, per message for streams). Runtime-free: the entry point
 * supplies how to read the client's address.
 */
import { Hono, type Context } from "hono";
import { cors } from "hono/cors";
import type { ClientInfo, HeaderFields, Transcoder } from "../transcode/transcoder.ts";

export interface PublicAppOptions {
  readonly transcoder: Transcoder;
  readonly cors:
    | {
        readonly allowOrigins: readonly string[];
        readonly allowHeaders: readonly string[];
        readonly exposeHeaders: readonly string[];
        readonly maxAgeSeconds: number;
      }
    | undefined;
  /** The runtime's view of the connection (peer address). */
  readonly remoteAddress: (c: Context) => string | undefined;
  /** The request headers as the runtime parsed them, if it did (see ClientInfo.headerFields). */
  readonly headerFields?: (c: Context) => HeaderFields | undefined;
}

/** Headers browsers may send cross-origin by default, plus what gRPC metadata mapping reads. */
const defaultCorsRequestHeaders = ["authorization", "content-type", "grpc-timeout", "x-request-id"];

export function createPublicApp(options: PublicAppOptions): Hono {
  const { transcoder } = options;
  const app = new Hono();

  if (options.cors !== undefined) {
    const conf = options.cors;
    const anyOrigin = conf.allowOrigins.includes("*");
    app.use(
      cors({
        origin: anyOrigin ? "*" : [...conf.allowOrigins],
        allowMethods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        allowHeaders: conf.allowHeaders.length > 0 ? [...conf.allowHeaders] : defaultCorsRequestHeaders,
        exposeHeaders: conf.exposeHeaders.length > 0 ? [...conf.exposeHeaders] : ["x-request-id"],
        maxAge: conf.maxAgeSeconds,
      }),
    );
  }

  app.all("*", (c) => {
    const client: ClientInfo = {
      remoteAddress: options.remoteAddress(c),
      host: c.req.header("host"),
      protocol: "http",
      headerFields: options.headerFields?.(c),
    };
    return transcoder.handle(c.req.raw, client);
  });
  app.onError((error) => transcoder.errorResponse(error));

  return app;
}
