/**
 * Node entry point: listeners only. One port serves HTTP/1.1 and cleartext HTTP/2 (h2c with
 * prior knowledge): the first bytes of a connection tell which, so browsers, curl and gRPC-aware
 * proxies all reach the same app.
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { getRequestListener, type HttpBindings } from "@hono/node-server";
import type { Hono } from "hono";
import type { HostPort } from "./config/index.ts";
import { main, type Listener } from "./main.ts";

const http2Preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

async function listen(app: Hono, at: HostPort): Promise<Listener> {
  const onRequest = getRequestListener(app.fetch);
  let draining = false;
  const inFlight = new Set<http.ServerResponse | http2.Http2ServerResponse>();
  let onIdle: (() => void) | undefined;

  const track = (
    req: http.IncomingMessage | http2.Http2ServerRequest,
    res: http.ServerResponse | http2.Http2ServerResponse,
  ) => {
    inFlight.add(res);
    res.once("close", () => {
      inFlight.delete(res);
      if (inFlight.size === 0) onIdle?.();
    });
    // While draining, HTTP/1.1 keep-alive connections are told to go after this response.
    if (draining && res instanceof http.ServerResponse) res.setHeader("connection", "close");
    void onRequest(req, res);
  };

  const h1 = http.createServer({ keepAliveTimeout: 65_000 }, track);
  const h2 = http2.createServer({}, track);
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    if (draining) session.close();
  });
  const sockets = new Set<net.Socket>();
  const front = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    sniff(socket, (isHttp2) => (isHttp2 ? h2 : h1).emit("connection", socket));
  });

  await new Promise<void>((resolve, reject) => {
    front.once("error", reject);
    front.listen(at.port, at.host, () => {
      front.off("error", reject);
      resolve();
    });
  });
  const address = front.address() as net.AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;

  return {
    url: `http://${host}:${address.port}`,
    async close(deadlineMs) {
      draining = true;
      front.close();
      h1.closeIdleConnections();
      for (const session of sessions) session.close(); // GOAWAY: open streams finish
      if (inFlight.size > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.max(0, deadlineMs - Date.now()));
          onIdle = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      h1.closeAllConnections();
      for (const socket of sockets) socket.destroy();
    },
  };
}

/** Reads just enough of a new connection to tell HTTP/2 prior knowledge from HTTP/1.x. */
function sniff(socket: net.Socket, route: (isHttp2: boolean) => void): void {
  let head = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    head = Buffer.concat([head, chunk]);
    const n = Math.min(head.length, http2Preface.length);
    const isPrefix = head.subarray(0, n).equals(http2Preface.subarray(0, n));
    if (isPrefix && head.length < http2Preface.length) return; // need more bytes to decide
    socket.off("data", onData);
    socket.pause();
    socket.unshift(head);
    route(isPrefix);
    socket.resume();
  };
  socket.on("data", onData);
}

await main({
  name: "node",
  args: process.argv.slice(2),
  listen,
  remoteAddress: (c) => (c.env as HttpBindings | undefined)?.incoming?.socket?.remoteAddress,
  onShutdownSignal(handler) {
    process.once("SIGTERM", () => handler("SIGTERM"));
    process.once("SIGINT", () => handler("SIGINT"));
  },
  exit: (code) => process.exit(code),
});
