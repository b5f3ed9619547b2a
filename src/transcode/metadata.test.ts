import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { incomingMetadataHeaders, outgoingMetadata, type ClientInfo } from "./metadata.ts";

const client: ClientInfo = { remoteAddress: "127.0.0.1", host: "gw.local:8080", protocol: "http" };
/**
 * The metadata for these headers, read both ways a runtime can give them: a Web Headers alone
 * (Deno) and with the already-parsed fields beside it (Node); both must agree.
 */
function metadataOf(init: HeadersInit, c: ClientInfo = client): Record<string, string> {
  const headers = new Headers(init);
  const fromWeb = outgoingMetadata(headers, c);
  const fromFields = outgoingMetadata(headers, { ...c, headerFields: Object.fromEntries(headers) });
  assert.deepEqual(fromFields, fromWeb);
  return fromWeb;
}
const forwarded = { "x-forwarded-for": "127.0.0.1", "x-forwarded-host": "gw.local:8080", "x-forwarded-proto": "http" };

describe("outgoingMetadata", () => {
  test("Grpc-Metadata-<Key> (prefix stripped, lower-cased) and Authorization go up; other headers do not", () => {
    const headers = new Headers({
      "Grpc-Metadata-Tenant": "acme",
      "grpc-metadata-Request-Id": "r1",
      Authorization: "Bearer t0k",
      "X-Not-Forwarded": "no",
      Cookie: "session=1",
      Accept: "application/json",
    });
    assert.deepEqual(metadataOf(headers), {
      tenant: "acme",
      "request-id": "r1",
      authorization: "Bearer t0k",
      ...forwarded,
    });
  });

  test("hop-by-hop headers never pass, not even behind the prefix or when named in Connection", () => {
    const headers = new Headers({
      Connection: "keep-alive, X-Secret, Grpc-Metadata-Listed",
      "Grpc-Metadata-Connection": "sneaky",
      "Grpc-Metadata-Keep-Alive": "x",
      "Grpc-Metadata-TE": "trailers",
      "Grpc-Metadata-Transfer-Encoding": "chunked",
      "Grpc-Metadata-Upgrade": "h2c",
      "Grpc-Metadata-Proxy-Authorization": "x",
      "Grpc-Metadata-Trailer": "x",
      "Grpc-Metadata-X-Secret": "hidden",
      "Grpc-Metadata-Listed": "hidden",
      "Grpc-Metadata-Kept": "yes",
    });
    assert.deepEqual(metadataOf(headers), { kept: "yes", ...forwarded });
  });

  test("names the gRPC transport owns never pass", () => {
    const headers = new Headers({
      "Grpc-Metadata-Grpc-Status": "0",
      "Grpc-Metadata-Grpc-Timeout": "1S",
      "Grpc-Metadata-Content-Type": "text/plain",
      "Grpc-Metadata-Content-Length": "1",
      "Grpc-Metadata-User-Agent": "x",
      "Grpc-Metadata-Host": "evil",
      "Grpc-Metadata-": "empty key",
      "Grpc-Metadata-Bad!Key": "x",
      "Grpc-Metadata-Latin1": "caf\u00e9",
    });
    assert.deepEqual(metadataOf(headers), forwarded);
  });

  test("-bin values must be base64; they are passed as unpadded standard base64", () => {
    const headers = new Headers({
      "Grpc-Metadata-A-Bin": "AQID",
      "Grpc-Metadata-B-Bin": "+/8=",
      "Grpc-Metadata-C-Bin": "-_8",
      "Grpc-Metadata-D-Bin": "AQID, BAU=",
    });
    const md = metadataOf(headers);
    assert.deepEqual([md["a-bin"], md["b-bin"], md["c-bin"], md["d-bin"]], ["AQID", "+/8", "+/8", "AQID,BAU"]);
    for (const bad of ["!!!", "A", "AQID=="]) {
      assert.throws(
        () => metadataOf({ "Grpc-Metadata-Trace-Bin": bad }),
        (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument && /Trace-Bin/i.test(e.rawMessage),
        bad,
      );
    }
  });

  test("parsed fields: a listed (repeated) value is sent joined, as Headers joins it", () => {
    const headerFields = { "grpc-metadata-x": ["a", "b"], "grpc-metadata-y": "c", ":path": "/v1/x", host: "gw" };
    assert.deepEqual(outgoingMetadata(new Headers({ host: "gw" }), { ...client, headerFields }), {
      x: "a, b",
      y: "c",
      ...forwarded,
      "x-forwarded-host": "gw",
    });
  });

  test("X-Forwarded-For appends the client address to what came in", () => {
    const md = (h: Record<string, string>, c: ClientInfo = client) => metadataOf(h, c)["x-forwarded-for"];
    assert.equal(md({}), "127.0.0.1");
    assert.equal(md({ "X-Forwarded-For": "203.0.113.9" }), "203.0.113.9, 127.0.0.1");
    assert.equal(md({ "X-Forwarded-For": "203.0.113.9" }, { ...client, remoteAddress: undefined }), "203.0.113.9");
    assert.equal(md({}, { ...client, remoteAddress: undefined }), undefined);
    assert.equal(md({ "Grpc-Metadata-X-Forwarded-For": "1.2.3.4" }), "127.0.0.1", "not spoofable through the prefix");
  });

  test("X-Forwarded-Host: the incoming one, else Host, else the client's host; X-Forwarded-Proto likewise", () => {
    const md = (h: Record<string, string>, c: ClientInfo = client) => metadataOf(h, c);
    assert.equal(md({ "X-Forwarded-Host": "api.example", Host: "gw" })["x-forwarded-host"], "api.example");
    assert.equal(md({ Host: "gw:1" })["x-forwarded-host"], "gw:1");
    assert.equal(md({})["x-forwarded-host"], "gw.local:8080");
    assert.equal(md({}, { ...client, host: undefined })["x-forwarded-host"], undefined);
    assert.equal(md({}, { ...client, protocol: "https" })["x-forwarded-proto"], "https");
    assert.equal(md({ "X-Forwarded-Proto": "https" })["x-forwarded-proto"], "https");
  });
});

describe("incomingMetadataHeaders", () => {
  test("upstream headers then trailers as Grpc-Metadata-<key>, transport names left out", () => {
    const header = new Headers({
      "content-type": "application/grpc+proto",
      "grpc-encoding": "identity",
      "grpc-accept-encoding": "gzip",
      date: "Mon, 01 Jan 2024 00:00:00 GMT",
      "x-backend": "b1",
      "trace-bin": "AQID",
    });
    const trailer = new Headers({ "grpc-status": "0", "grpc-message": "", "x-backend-trailer": "b1" });
    assert.deepEqual(incomingMetadataHeaders(header, trailer), [
      ["Grpc-Metadata-trace-bin", "AQID"],
      ["Grpc-Metadata-x-backend", "b1"],
      ["Grpc-Metadata-x-backend-trailer", "b1"],
    ]);
  });

  test("nothing in, nothing out", () => {
    assert.deepEqual(incomingMetadataHeaders(undefined, undefined), []);
    assert.deepEqual(incomingMetadataHeaders(new Headers({ "grpc-status": "5" }), undefined), []);
  });
});
