/**
 * A small authoritative DNS server on UDP 127.0.0.1 for tests: answers A, AAAA and SRV from
 * records the test sets, NXDOMAIN for names it does not hold, and can be told to fail
 * (SERVFAIL) or to stay silent (a client times out). No recursion, no TCP; an EDNS OPT record
 * in a query is ignored, so answers stay within plain DNS's 512 bytes (else they are truncated).
 */
import { createSocket } from "node:dgram";
import {
  ClassIN,
  decodeMessage,
  encodeMessage,
  Rcode,
  RecordType,
  type Header,
  type Message,
  type Question,
  type RecordData,
} from "./wire.ts";

export interface SrvTarget {
  readonly priority: number;
  readonly weight: number;
  readonly port: number;
  readonly target: string;
}

export interface FakeDnsRecords {
  readonly a?: readonly string[];
  readonly aaaa?: readonly string[];
  readonly srv?: readonly SrvTarget[];
  /** Seconds; 5 unless set. */
  readonly ttl?: number;
}

/** `servfail` answers every query with SERVFAIL; `drop` never answers. */
export type FakeDnsMode = "normal" | "servfail" | "drop";

export interface FakeDnsServer {
  /** `127.0.0.1:<port>`, as `Resolver.setServers` takes it. */
  readonly address: string;
  readonly port: number;
  /** Replaces every record of `name` (the name then exists, even with no records: NODATA). */
  setRecords(name: string, records: FakeDnsRecords): void;
  /** The name no longer exists: NXDOMAIN. */
  remove(name: string): void;
  setMode(mode: FakeDnsMode): void;
  /** Queries received for `name` (any type, or only `type`), answered or not. */
  queries(name: string, type?: keyof typeof RecordType): number;
  stop(): Promise<void>;
}

const plainDnsLimit = 512;
const defaultTtlSeconds = 5;

export async function startFakeDnsServer(): Promise<FakeDnsServer> {
  const zone = new Map<string, FakeDnsRecords>();
  const counts = new Map<string, number>();
  let mode: FakeDnsMode = "normal";

  const socket = createSocket("udp4");
  socket.on("message", (packet, remote) => {
    const reply = answer(packet);
    if (reply) socket.send(reply, remote.port, remote.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(0, "127.0.0.1", () => {
      socket.off("error", reject);
      resolve();
    });
  });
  // A send to a vanished client must not crash the test process.
  socket.on("error", () => {});
  const port = socket.address().port;

  function answer(packet: Uint8Array): Uint8Array | undefined {
    let query: Message;
    try {
      query = decodeMessage(packet);
    } catch {
      if (packet.length < 2) return undefined;
      const id = (packet[0] << 8) | packet[1];
      return encodeMessage(reply({ id, qr: 0, opcode: 0, aa: 0, tc: 0, rd: 0, ra: 0, rcode: 0 }, [], Rcode.FormErr));
    }
    if (query.header.qr === 1) return undefined;
    if (query.header.opcode !== 0) return encodeMessage(reply(query.header, query.questions, Rcode.NotImp));
    if (query.questions.length !== 1) return encodeMessage(reply(query.header, query.questions, Rcode.FormErr));
    const question = query.questions[0];
    const name = canonical(question.name);
    for (const key of [name, `${name}/${question.type}`]) counts.set(key, (counts.get(key) ?? 0) + 1);

    if (mode === "drop") return undefined;
    if (mode === "servfail") return encodeMessage(reply(query.header, query.questions, Rcode.ServFail));
    if (question.class !== ClassIN) return encodeMessage(reply(query.header, query.questions, Rcode.Refused));
    const records = zone.get(name);
    if (!records) return encodeMessage(reply(query.header, query.questions, Rcode.NXDomain));

    const answers = recordData(records, question.type).map((data) => ({
      name: question.name,
      class: ClassIN,
      ttl: records.ttl ?? defaultTtlSeconds,
      data,
    }));
    const full = encodeMessage({ ...reply(query.header, query.questions, Rcode.NoError), answers });
    if (full.length <= plainDnsLimit) return full;
    return encodeMessage(reply({ ...query.header, tc: 1 }, query.questions, Rcode.NoError));
  }

  return {
    address: `127.0.0.1:${port}`,
    port,
    setRecords(name, records) {
      zone.set(canonical(name), records);
    },
    remove(name) {
      zone.delete(canonical(name));
    },
    setMode(next) {
      mode = next;
    },
    queries(name, type) {
      const key = type === undefined ? canonical(name) : `${canonical(name)}/${RecordType[type]}`;
      return counts.get(key) ?? 0;
    },
    stop() {
      return new Promise((resolve) => socket.close(() => resolve()));
    },
  };
}

function canonical(name: string): string {
  return name.replace(/\.$/, "").toLowerCase();
}

function recordData(records: FakeDnsRecords, type: number): RecordData[] {
  switch (type) {
    case RecordType.A:
      return (records.a ?? []).map((address) => ({ kind: "A", address }));
    case RecordType.AAAA:
      return (records.aaaa ?? []).map((address) => ({ kind: "AAAA", address }));
    case RecordType.SRV:
      return (records.srv ?? []).map((srv) => ({ kind: "SRV", ...srv }));
    default:
      return [];
  }
}

/** An authoritative answer to `query` with no records yet; the question is echoed as asked. */
function reply(query: Header, questions: readonly Question[], rcode: number): Message {
  return {
    header: { ...query, qr: 1, aa: 1, ra: 0, rcode },
    questions,
    answers: [],
    authorities: [],
    additionals: [],
  };
}
