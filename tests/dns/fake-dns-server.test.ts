/**
 * The fake DNS server, proven with real clients: Node's resolver (c-ares) and Deno's
 * (hickory), plus raw packets for what those clients never send.
 */
import { execFile } from "node:child_process";
import { createSocket } from "node:dgram";
import { Resolver } from "node:dns/promises";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { startFakeDnsServer, type FakeDnsServer } from "./fake-dns-server.ts";
import { ClassIN, decodeMessage, encodeMessage, Rcode, RecordType, type Message } from "./wire.ts";

const deno = fileURLToPath(new URL("../../node_modules/.bin/deno", import.meta.url));

let server: FakeDnsServer;
before(async () => {
  server = await startFakeDnsServer();
});
after(() => server.stop());

function resolver(timeoutMs = 1_000): Resolver {
  const r = new Resolver({ timeout: timeoutMs, tries: 1 });
  r.setServers([server.address]);
  return r;
}

async function errorCode(query: Promise<unknown>): Promise<unknown> {
  return query.then(
    (answer) => assert.fail(`expected an error, got ${JSON.stringify(answer)}`),
    (e: { code?: unknown }) => e.code,
  );
}

/** One datagram to the server and its answer, or undefined after `timeoutMs`. */
async function exchange(packet: Uint8Array, timeoutMs = 1_000): Promise<Uint8Array | undefined> {
  const socket = createSocket("udp4");
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs);
      socket.once("message", (answer) => {
        clearTimeout(timer);
        resolve(answer);
      });
      socket.once("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
      socket.send(packet, server.port, "127.0.0.1");
    });
  } finally {
    socket.close();
  }
}

function query(id: number, names: readonly string[], type: number, extra: Partial<Message> = {}): Uint8Array {
  return encodeMessage({
    header: { id, qr: 0, opcode: 0, aa: 0, tc: 0, rd: 1, ra: 0, rcode: 0 },
    questions: names.map((name) => ({ name, type, class: ClassIN })),
    answers: [],
    authorities: [],
    additionals: [],
    ...extra,
  });
}

describe("the fake DNS server answers Node's resolver", () => {
  test("A and AAAA records, with TTLs", async () => {
    server.setRecords("web.svc.test", { a: ["10.0.0.2", "10.0.0.1"], aaaa: ["fd00::2", "2001:db8:0:0:0:0:0:1"], ttl: 7 });
    const r = resolver();
    assert.deepEqual((await r.resolve4("web.svc.test")).sort(), ["10.0.0.1", "10.0.0.2"]);
    assert.deepEqual((await r.resolve6("web.svc.test")).sort(), ["2001:db8::1", "fd00::2"]);
    assert.deepEqual(await r.resolve4("web.svc.test", { ttl: true }), [
      { address: "10.0.0.2", ttl: 7 },
      { address: "10.0.0.1", ttl: 7 },
    ]);
  });

  test("names are case-insensitive and a trailing dot is the same name", async () => {
    server.setRecords("Case.Test.", { a: ["10.0.0.9"] });
    assert.deepEqual(await resolver().resolve4("cAsE.tEsT"), ["10.0.0.9"]);
  });

  test("SRV records with their ports, priorities, weights and targets", async () => {
    const srv = [
      { priority: 10, weight: 5, port: 50051, target: "a.svc.test" },
      { priority: 20, weight: 0, port: 50052, target: "b.other.test" },
    ];
    server.setRecords("_grpc._tcp.svc.test", { srv });
    const answer = await resolver().resolveSrv("_grpc._tcp.svc.test");
    assert.deepEqual(
      answer.map(({ priority, weight, port, name }) => ({ priority, weight, port, target: name })),
      srv,
    );
  });

  test("an unknown name is NXDOMAIN, a known name without that type is NODATA", async () => {
    server.setRecords("only-v4.test", { a: ["10.0.0.3"] });
    const r = resolver();
    assert.equal(await errorCode(r.resolve4("missing.test")), "ENOTFOUND");
    assert.equal(await errorCode(r.resolve6("only-v4.test")), "ENODATA");
    server.remove("only-v4.test");
    assert.equal(await errorCode(r.resolve4("only-v4.test")), "ENOTFOUND");
  });

  test("servfail mode fails every query, drop mode times the client out", async (t) => {
    server.setRecords("flaky.test", { a: ["10.0.0.4"] });
    t.after(() => server.setMode("normal"));
    const r = resolver(200);
    server.setMode("servfail");
    assert.equal(await errorCode(r.resolve4("flaky.test")), "ESERVFAIL");
    server.setMode("drop");
    const startedAt = performance.now();
    assert.equal(await errorCode(r.resolve4("flaky.test")), "ETIMEOUT");
    assert.ok(performance.now() - startedAt >= 150, "the client waited for its timeout");
    server.setMode("normal");
    assert.deepEqual(await r.resolve4("flaky.test"), ["10.0.0.4"]);
  });

  test("queries are counted per name and per type, answered or not", async (t) => {
    server.setRecords("counted.test", { a: ["10.0.0.5"] });
    t.after(() => server.setMode("normal"));
    const r = resolver(100);
    await r.resolve4("counted.test");
    await errorCode(r.resolve6("counted.test"));
    server.setMode("drop");
    await errorCode(r.resolve4("counted.test"));
    assert.equal(server.queries("counted.test", "A"), 2);
    assert.equal(server.queries("counted.test", "AAAA"), 1);
    assert.equal(server.queries("counted.test"), 3);
    assert.equal(server.queries("never-asked.test"), 0);
  });
});

test("Deno's own resolver (hickory, not c-ares) reads the same answers", async () => {
  server.setRecords("deno.svc.test", { a: ["10.1.0.1"], aaaa: ["fd00::1"] });
  server.setRecords("_grpc._tcp.deno.svc.test", { srv: [{ priority: 1, weight: 2, port: 50053, target: "deno.svc.test" }] });
  const script = `
    const nameServer = { ipAddr: "127.0.0.1", port: ${server.port} };
    const ask = (name, type) => Deno.resolveDns(name, type, { nameServer }).catch((e) => e.name);
    console.log(JSON.stringify({
      a: await ask("deno.svc.test", "A"),
      aaaa: await ask("deno.svc.test", "AAAA"),
      srv: await ask("_grpc._tcp.deno.svc.test", "SRV"),
      missing: await ask("missing.deno.test", "A"),
    }));`;
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(deno, ["eval", script], { timeout: 30_000 }, (error, out, err) =>
      error ? reject(new Error(`deno failed: ${err || error.message}`)) : resolve(out),
    );
  });
  assert.deepEqual(JSON.parse(stdout), {
    a: ["10.1.0.1"],
    aaaa: ["fd00::1"],
    srv: [{ priority: 1, weight: 2, port: 50053, target: "deno.svc.test." }],
    missing: "NotFound",
  });
});

describe("raw packets", () => {
  test("an answer echoes id and question, is authoritative, and compresses owner names", async () => {
    server.setRecords("raw.test", { a: ["10.2.0.1", "10.2.0.2"] });
    const opt = { name: "", class: 1232, ttl: 0, data: { kind: "raw", type: RecordType.OPT, bytes: new Uint8Array() } } as const;
    const answer = await exchange(query(0xbeef, ["raw.test"], RecordType.A, { additionals: [opt] }));
    assert.ok(answer);
    const message = decodeMessage(answer);
    assert.deepEqual(message.header, { id: 0xbeef, qr: 1, opcode: 0, aa: 1, tc: 0, rd: 1, ra: 0, rcode: Rcode.NoError });
    assert.deepEqual(message.questions, [{ name: "raw.test", type: RecordType.A, class: ClassIN }]);
    assert.deepEqual(
      message.answers.map((r) => [r.name, r.data]),
      [
        ["raw.test", { kind: "A", address: "10.2.0.1" }],
        ["raw.test", { kind: "A", address: "10.2.0.2" }],
      ],
    );
    // Each answer's owner name is a pointer to the question's name at offset 12.
    const pointers = answer.filter((byte, i) => byte === 0xc0 && answer[i + 1] === 12).length;
    assert.equal(pointers, 2);
  });

  test("two questions are FORMERR, garbage is FORMERR with the id kept", async () => {
    const two = decodeMessage((await exchange(query(7, ["a.test", "b.test"], RecordType.A)))!);
    assert.equal(two.header.rcode, Rcode.FormErr);
    const garbage = decodeMessage((await exchange(Uint8Array.of(0x12, 0x34, 0xff)))!);
    assert.deepEqual([garbage.header.id, garbage.header.rcode], [0x1234, Rcode.FormErr]);
  });

  test("an answer over 512 bytes is cut to its question with TC set", async () => {
    const many = Array.from({ length: 40 }, (_, i) => `10.3.0.${i + 1}`);
    server.setRecords("big.test", { a: many });
    const message = decodeMessage((await exchange(query(9, ["big.test"], RecordType.A)))!);
    assert.equal(message.header.tc, 1);
    assert.equal(message.answers.length, 0);
  });

  test("drop mode sends nothing back", async (t) => {
    t.after(() => server.setMode("normal"));
    server.setMode("drop");
    assert.equal(await exchange(query(11, ["raw.test"], RecordType.A), 200), undefined);
  });
});

describe("wire format", () => {
  test("a pointer that does not point backwards is rejected, not followed forever", () => {
    const header = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    const selfPointer = Uint8Array.of(...header, 0xc0, 12, 0, 1, 0, 1);
    assert.throws(() => decodeMessage(selfPointer), /does not point backwards/);
  });

  test("a message cut short is rejected", () => {
    const whole = query(1, ["cut.test"], RecordType.A);
    for (const length of [0, 11, 13, whole.length - 1]) {
      assert.throws(() => decodeMessage(whole.subarray(0, length)), `cut at ${length}`);
    }
  });

  test("encode then decode gives the message back", () => {
    const label = fc.stringMatching(/^[a-z0-9-]{1,20}$/);
    const name = fc.array(label, { minLength: 1, maxLength: 4 }).map((labels) => labels.join("."));
    const data = fc.oneof(
      fc.ipV4().map((address) => ({ kind: "A" as const, address })),
      // The WHATWG URL parser writes IPv6 in the RFC 5952 form, as the decoder does.
      fc.ipV6().map((address) => ({ kind: "AAAA" as const, address: new URL(`http://[${address}]`).hostname.slice(1, -1) })),
      fc.tuple(fc.nat(0xffff), fc.nat(0xffff), fc.nat(0xffff), name).map(([priority, weight, port, target]) => ({
        kind: "SRV" as const,
        priority,
        weight,
        port,
        target,
      })),
    );
    const record = fc.record({ name, class: fc.constant(ClassIN), ttl: fc.nat(), data }, { noNullPrototype: true });
    fc.assert(
      fc.property(fc.nat(0xffff), name, fc.array(record, { maxLength: 6 }), (id, qname, answers) => {
        const message: Message = {
          header: { id, qr: 1, opcode: 0, aa: 1, tc: 0, rd: 0, ra: 0, rcode: 0 },
          questions: [{ name: qname, type: RecordType.A, class: ClassIN }],
          answers,
          authorities: [],
          additionals: [],
        };
        assert.deepEqual(decodeMessage(encodeMessage(message)), message);
      }),
    );
  });
});
