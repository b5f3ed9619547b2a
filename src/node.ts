/**
 * Node entry point: listeners only. One port serves HTTP/1.1 and cleartext HTTP/2 (h2c with
 * prior knowledge): the first bytes of a connection tell which, so browsers, curl and gRPC-aware
 * proxies all reach the same app. With `workers: N` (N > 1), node:cluster runs N copies that
 * share the listening sockets; the primary only supervises.
 */
import cluster, { type Worker } from "node:cluster";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { Duplex } from "node:stream";
import { getRequestListener, type HttpBindings } from "@hono/node-server";
import type { Hono } from "hono";
import type { HostPort } from "./config/index.ts";
import { main, type Listener, type Workers } from "./main.ts";

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
  let arriving: net.Socket | undefined; // the socket whose session the server is creating
  h2.on("session", (session) => {
    sessions.add(session);
    if (arriving !== undefined) peerOfSession.set(session, arriving);
    session.once("close", () => sessions.delete(session));
    if (draining) session.close();
  });
  const sockets = new Set<net.Socket>();
  const front = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    sniff(socket, (isHttp2, head) => {
      if (!isHttp2) {
        socket.unshift(head);
        h1.emit("connection", socket);
        return;
      }
      arriving = socket;
      h2.emit("connection", replaying(socket, head));
      arriving = undefined;
    });
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

/**
 * Reads just enough of a new connection to tell HTTP/2 prior knowledge from HTTP/1.x, then hands
 * over the bytes it read with the verdict (the socket is paused meanwhile).
 */
function sniff(socket: net.Socket, route: (isHttp2: boolean, head: Buffer) => void): void {
  let head = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    head = Buffer.concat([head, chunk]);
    const n = Math.min(head.length, http2Preface.length);
    const isPrefix = head.subarray(0, n).equals(http2Preface.subarray(0, n));
    if (isPrefix && head.length < http2Preface.length) return; // need more bytes to decide
    socket.off("data", onData);
    socket.pause();
    route(isPrefix, head);
    socket.resume();
  };
  socket.on("data", onData);
}

/**
 * `socket` as a JS stream that first yields `head`. node:http2 reads a net.Socket's native
 * handle directly, so bytes already read in JS (and unshifted) would never reach it; through a
 * JS stream they do.
 */
function replaying(socket: net.Socket, head: Buffer): Duplex {
  const duplex = new Duplex({
    read: () => void socket.resume(),
    write: (chunk, encoding, callback) => void socket.write(chunk, encoding, callback),
    final: (callback) => void socket.end(callback),
    destroy: (error, callback) => {
      socket.destroy(error ?? undefined);
      callback(error);
    },
  });
  duplex.push(head);
  socket.on("data", (chunk) => {
    if (!duplex.push(chunk)) socket.pause();
  });
  socket.once("end", () => duplex.push(null));
  socket.once("close", () => duplex.destroy());
  return duplex;
}

/** The TCP connection behind an h2c session (its own socket is the JS stream above). */
const peerOfSession = new WeakMap<http2.ServerHttp2Session, net.Socket>();

function remoteAddress(incoming: http.IncomingMessage | http2.Http2ServerRequest | undefined): string | undefined {
  if (incoming instanceof http2.Http2ServerRequest) return peerOfSession.get(incoming.stream.session as http2.ServerHttp2Session)?.remoteAddress;
  return incoming?.socket?.remoteAddress;
}

const listeningMessage = "grpc-edge:listening";
/** The worker's slot (1..N), kept by a replacement, so log lines name a stable worker. */
const workerSlotEnv = "GRPC_EDGE_WORKER";

const workers: Workers = {
  workerId: cluster.isWorker ? Number(process.env[workerSlotEnv]) : undefined,
  supervise,
  reportListening: (line) => process.send!({ type: listeningMessage, line }),
};

/**
 * The cluster primary: forks `count` workers running this command line; every worker listens
 * on the same addresses, and node:cluster hands each new connection to one of them in turn
 * (port 0 too: the primary binds once and shares that port). It prints one listening line when
 * all workers listen. A worker that fails before listening (a bad descriptor, a taken port)
 * stops everything with its exit code; one that dies later is replaced. SIGTERM/SIGINT go to
 * every worker, which drains as a single process would; the primary exits 0 once all exited 0.
 */
function supervise(count: number, drainTimeoutMs: number): Promise<never> {
  const live = new Map<number, Worker>(); // slot → worker
  let announced = false;
  let listening = 0;
  let stopping = false;
  let exitCode = 0;

  const stopAll = () => {
    stopping = true;
    for (const w of live.values()) w.process.kill("SIGTERM");
    // Beyond the drain deadline a worker is stuck: the deadline is the contract, not the worker.
    setTimeout(() => {
      for (const w of live.values()) w.process.kill("SIGKILL");
    }, drainTimeoutMs + 5_000).unref();
    if (live.size === 0) process.exit(exitCode);
  };

  const fork = (slot: number) => {
    const worker = cluster.fork({ [workerSlotEnv]: String(slot) });
    let up = false;
    live.set(slot, worker);
    worker.on("message", (m: { type?: string; line?: string }) => {
      if (m?.type !== listeningMessage || up) return;
      up = true;
      if (announced) return console.log(`grpc-edge: worker ${slot} (pid ${worker.process.pid}) replaced and listening`);
      if (++listening < count) return;
      announced = true;
      const pids = [...live.values()].map((w) => w.process.pid).join(", ");
      console.log(`grpc-edge: ${m.line}, ${count} workers (pids ${pids})`);
    });
    worker.on("exit", (code, signal) => {
      live.delete(slot);
      const failed = code !== 0;
      if (stopping) {
        if (failed && exitCode === 0) exitCode = 1;
      } else if (!up) {
        exitCode = code ?? 1; // its reason is already on stderr
        stopAll();
      } else {
        console.error(`grpc-edge: warning: worker ${slot} exited (${code ?? signal}); starting a new one`);
        fork(slot);
      }
      if (stopping && live.size === 0) process.exit(exitCode);
    });
  };

  for (let slot = 1; slot <= count; slot++) fork(slot);
  const onSignal = (signal: string) => {
    if (stopping) return;
    console.log(`grpc-edge: ${signal}: draining ${live.size} workers`);
    stopAll();
  };
  process.once("SIGTERM", () => onSignal("SIGTERM"));
  process.once("SIGINT", () => onSignal("SIGINT"));
  return new Promise<never>(() => {});
}

await main({
  name: "node",
  args: process.argv.slice(2),
  listen,
  remoteAddress: (c) => remoteAddress((c.env as HttpBindings | undefined)?.incoming),
  headerFields: (c) => (c.env as HttpBindings | undefined)?.incoming?.headers,
  onShutdownSignal(handler) {
    process.once("SIGTERM", () => handler("SIGTERM"));
    process.once("SIGINT", () => handler("SIGINT"));
  },
  exit: (code) => process.exit(code),
  workers,
});
