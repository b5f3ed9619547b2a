/**
 * The Node wire limit: the least possible program that takes the benchmark's HTTP request and
 * makes the gRPC call it stands for. No routing, no transcoding: the request picks one of three
 * fixed pre-encoded frames (bench/requests.ts), sent over one node:http2 session; a unary call
 * is answered with a fixed JSON body once the upstream said grpc-status 0, a stream with one
 * fixed NDJSON line per message (only the 5-byte length prefixes are read).
 *
 *   node bench/minimal-proxy.ts --listen 127.0.0.1:8082 --upstream 127.0.0.1:50051
 */
import http from "node:http";
import http2 from "node:http2";
import { parseArgs } from "node:util";
import { requests, type BenchRequest } from "./requests.ts";

const { values } = parseArgs({
  options: { listen: { type: "string" }, upstream: { type: "string" } },
});
if (values.listen === undefined || values.upstream === undefined) {
  console.error("usage: minimal-proxy --listen HOST:PORT --upstream HOST:PORT");
  process.exit(2);
}
const [host, port] = splitHostPort(values.listen);

let session = connect();
function connect(): http2.ClientHttp2Session {
  const s = http2.connect(`http://${values.upstream}`);
  s.on("error", () => {});
  s.on("close", () => {
    if (session === s) session = connect();
  });
  return s;
}

const grpcHeaders = (r: BenchRequest) => ({
  ":method": "POST",
  ":path": r.grpcPath,
  "content-type": "application/grpc",
  te: "trailers",
});

const streamLine = `${JSON.stringify({ result: { s: "item-0", i32: 0 } })}\n`;

/** Counts the gRPC messages that start in each chunk, reading only the length prefixes. */
function messageCounter(): (chunk: Buffer) => number {
  let left = 0; // bytes of the current message still to come
  let prefix = Buffer.alloc(0); // a length prefix split across chunks
  return (chunk) => {
    let n = 0;
    let at = 0;
    while (at < chunk.length) {
      if (left > 0) {
        const take = Math.min(left, chunk.length - at);
        left -= take;
        at += take;
        continue;
      }
      const need = 5 - prefix.length;
      prefix = Buffer.concat([prefix, chunk.subarray(at, at + need)]);
      at += Math.min(need, chunk.length - at);
      if (prefix.length < 5) break;
      left = prefix.readUInt32BE(1);
      prefix = Buffer.alloc(0);
      n++;
    }
    return n;
  };
}

function pick(req: http.IncomingMessage): BenchRequest {
  if (req.method === "POST") return requests.post;
  return req.url!.startsWith("/v1/stream/") ? requests.stream : requests.get;
}

function forward(r: BenchRequest, res: http.ServerResponse): void {
  const call = session.request(grpcHeaders(r));
  let status: string | undefined;
  call.on("trailers", (t) => (status = t["grpc-status"] as string | undefined));
  call.on("error", () => {});
  if (r.name === "stream") {
    res.writeHead(200, { "content-type": "application/x-ndjson" });
    const count = messageCounter();
    call.on("data", (chunk: Buffer) => {
      const n = count(chunk);
      if (n > 0) res.write(streamLine.repeat(n));
    });
    call.on("close", () => res.end());
  } else {
    call.on("data", () => {});
    call.on("close", () => {
      if (status === "0") res.writeHead(200, { "content-type": "application/json" }).end(r.responseJson);
      else res.writeHead(502).end();
    });
  }
  call.end(r.frame);
}

const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  const r = pick(req);
  if (req.method === "POST") {
    req.on("data", () => {});
    req.on("end", () => forward(r, res));
  } else {
    forward(r, res);
  }
});
server.listen(port, host, () => console.log(`minimal-proxy listening on ${values.listen} -> ${values.upstream}`));
process.once("SIGTERM", () => {
  server.close();
  server.closeAllConnections();
  session.close();
  process.exit(0);
});

function splitHostPort(hp: string): [string, number] {
  const i = hp.lastIndexOf(":");
  return [hp.slice(0, i), Number(hp.slice(i + 1))];
}
