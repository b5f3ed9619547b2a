/**
 * The DNS message format (RFC 1035 §4) for the fake DNS server: decode a message, encode one.
 * Only what an authoritative stand-in needs: A, AAAA and SRV data are typed, anything else
 * (an EDNS OPT record, say) is kept as raw bytes. Names are compressed on write and followed
 * through pointers on read.
 */
import { isIPv4, isIPv6 } from "node:net";

export const RecordType = { A: 1, AAAA: 28, SRV: 33, OPT: 41 } as const;
export const ClassIN = 1;
export const Rcode = { NoError: 0, FormErr: 1, ServFail: 2, NXDomain: 3, NotImp: 4, Refused: 5 } as const;

export interface Header {
  readonly id: number;
  /** 1 for a response. */
  readonly qr: 0 | 1;
  readonly opcode: number;
  /** Authoritative answer. */
  readonly aa: 0 | 1;
  /** Truncated: the answer did not fit, ask again over TCP. */
  readonly tc: 0 | 1;
  readonly rd: 0 | 1;
  readonly ra: 0 | 1;
  readonly rcode: number;
}

export interface Question {
  readonly name: string;
  readonly type: number;
  readonly class: number;
}

export type RecordData =
  | { readonly kind: "A"; readonly address: string }
  | { readonly kind: "AAAA"; readonly address: string }
  | {
      readonly kind: "SRV";
      readonly priority: number;
      readonly weight: number;
      readonly port: number;
      readonly target: string;
    }
  | { readonly kind: "raw"; readonly type: number; readonly bytes: Uint8Array };

export interface ResourceRecord {
  readonly name: string;
  readonly class: number;
  readonly ttl: number;
  readonly data: RecordData;
}

export interface Message {
  readonly header: Header;
  readonly questions: readonly Question[];
  readonly answers: readonly ResourceRecord[];
  readonly authorities: readonly ResourceRecord[];
  readonly additionals: readonly ResourceRecord[];
}

const headerLength = 12;
const maxNameLength = 255;
const maxLabelLength = 63;
/** A compression pointer holds a 14-bit offset. */
const maxPointerOffset = 0x3fff;

export function decodeMessage(bytes: Uint8Array): Message {
  if (bytes.length < headerLength) throw new Error(`message of ${bytes.length} bytes is shorter than a header`);
  const reader = new Reader(bytes);
  const id = reader.u16();
  const flags = reader.u16();
  const counts = [reader.u16(), reader.u16(), reader.u16(), reader.u16()];
  const header: Header = {
    id,
    qr: bit(flags, 15),
    opcode: (flags >> 11) & 0xf,
    aa: bit(flags, 10),
    tc: bit(flags, 9),
    rd: bit(flags, 8),
    ra: bit(flags, 7),
    rcode: flags & 0xf,
  };
  const questions: Question[] = [];
  for (let i = 0; i < counts[0]; i++) {
    questions.push({ name: reader.name(), type: reader.u16(), class: reader.u16() });
  }
  const records = (count: number) => Array.from({ length: count }, () => reader.record());
  return {
    header,
    questions,
    answers: records(counts[1]),
    authorities: records(counts[2]),
    additionals: records(counts[3]),
  };
}

export function encodeMessage(message: Message): Uint8Array {
  const writer = new Writer();
  const h = message.header;
  writer.u16(h.id);
  writer.u16(
    (h.qr << 15) | ((h.opcode & 0xf) << 11) | (h.aa << 10) | (h.tc << 9) | (h.rd << 8) | (h.ra << 7) | (h.rcode & 0xf),
  );
  writer.u16(message.questions.length);
  writer.u16(message.answers.length);
  writer.u16(message.authorities.length);
  writer.u16(message.additionals.length);
  for (const q of message.questions) {
    writer.name(q.name, true);
    writer.u16(q.type);
    writer.u16(q.class);
  }
  for (const r of [...message.answers, ...message.authorities, ...message.additionals]) writer.record(r);
  return writer.finish();
}

export function recordTypeOf(data: RecordData): number {
  return data.kind === "raw" ? data.type : RecordType[data.kind];
}

function bit(flags: number, position: number): 0 | 1 {
  return ((flags >> position) & 1) as 0 | 1;
}

class Reader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  #offset = 0;

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  #need(length: number): void {
    if (this.#offset + length > this.#bytes.length) {
      throw new Error(`message ends inside a field at offset ${this.#offset}`);
    }
  }

  u16(): number {
    this.#need(2);
    const value = this.#view.getUint16(this.#offset);
    this.#offset += 2;
    return value;
  }

  u32(): number {
    this.#need(4);
    const value = this.#view.getUint32(this.#offset);
    this.#offset += 4;
    return value;
  }

  take(length: number): Uint8Array {
    this.#need(length);
    const slice = this.#bytes.subarray(this.#offset, this.#offset + length);
    this.#offset += length;
    return slice;
  }

  /**
   * A name at the current offset, following compression pointers. Each pointer must point
   * before itself (RFC 1035 §4.1.4: "a prior occurrence"), so a hostile loop cannot hang us.
   */
  name(): string {
    const labels: string[] = [];
    let position = this.#offset;
    let resumeAt = -1;
    let length = 1;
    for (;;) {
      if (position >= this.#bytes.length) throw new Error(`name runs past the end at offset ${position}`);
      const lengthByte = this.#bytes[position];
      const labelType = lengthByte & 0xc0;
      if (labelType === 0xc0) {
        if (position + 1 >= this.#bytes.length) throw new Error(`pointer cut short at offset ${position}`);
        const target = ((lengthByte & 0x3f) << 8) | this.#bytes[position + 1];
        if (target >= position) throw new Error(`pointer at offset ${position} does not point backwards`);
        if (resumeAt < 0) resumeAt = position + 2;
        position = target;
        continue;
      }
      if (labelType !== 0) throw new Error(`unsupported label type at offset ${position}`);
      if (lengthByte === 0) {
        this.#offset = resumeAt < 0 ? position + 1 : resumeAt;
        return labels.join(".");
      }
      length += lengthByte + 1;
      if (length > maxNameLength) throw new Error(`name longer than ${maxNameLength} bytes`);
      if (position + 1 + lengthByte > this.#bytes.length) throw new Error(`label runs past the end at offset ${position}`);
      labels.push(String.fromCharCode(...this.#bytes.subarray(position + 1, position + 1 + lengthByte)));
      position += 1 + lengthByte;
    }
  }

  record(): ResourceRecord {
    const name = this.name();
    const type = this.u16();
    const klass = this.u16();
    const ttl = this.u32();
    const dataLength = this.u16();
    const end = this.#offset + dataLength;
    this.#need(dataLength);
    let data: RecordData;
    if (type === RecordType.A && dataLength === 4) {
      data = { kind: "A", address: this.take(4).join(".") };
    } else if (type === RecordType.AAAA && dataLength === 16) {
      data = { kind: "AAAA", address: formatIPv6(this.take(16)) };
    } else if (type === RecordType.SRV && dataLength >= 7) {
      data = { kind: "SRV", priority: this.u16(), weight: this.u16(), port: this.u16(), target: this.name() };
      if (this.#offset !== end) throw new Error(`SRV data of ${name} does not fill its ${dataLength} bytes`);
    } else {
      data = { kind: "raw", type, bytes: this.take(dataLength) };
    }
    return { name, class: klass, ttl, data };
  }
}

class Writer {
  readonly #bytes: number[] = [];
  /** Offsets of names already written, by lower-case suffix, for compression. */
  readonly #names = new Map<string, number>();

  u16(value: number): void {
    this.#bytes.push((value >> 8) & 0xff, value & 0xff);
  }

  u32(value: number): void {
    this.u16(Math.floor(value / 0x10000) & 0xffff);
    this.u16(value & 0xffff);
  }

  bytes(values: ArrayLike<number>): void {
    for (let i = 0; i < values.length; i++) this.#bytes.push(values[i]);
  }

  /**
   * Writes a name, pointing at an earlier copy of its longest known suffix when `compress`.
   * SRV targets go uncompressed (RFC 2782), yet later names may still point into them.
   */
  name(name: string, compress: boolean): void {
    const labels = name.replace(/\.$/, "").split(".").filter((label) => label !== "");
    if (labels.reduce((sum, label) => sum + label.length + 1, 1) > maxNameLength) {
      throw new Error(`name ${name} is longer than ${maxNameLength} bytes`);
    }
    for (let i = 0; i < labels.length; i++) {
      const suffix = labels.slice(i).join(".").toLowerCase();
      const earlier = this.#names.get(suffix);
      if (compress && earlier !== undefined) {
        this.u16(0xc000 | earlier);
        return;
      }
      if (!this.#names.has(suffix) && this.#bytes.length <= maxPointerOffset) {
        this.#names.set(suffix, this.#bytes.length);
      }
      const label = labels[i];
      if (label.length > maxLabelLength) throw new Error(`label ${label} is longer than ${maxLabelLength} bytes`);
      this.#bytes.push(label.length);
      for (let c = 0; c < label.length; c++) this.#bytes.push(label.charCodeAt(c) & 0xff);
    }
    this.#bytes.push(0);
  }

  record(record: ResourceRecord): void {
    this.name(record.name, true);
    this.u16(recordTypeOf(record.data));
    this.u16(record.class);
    this.u32(record.ttl);
    const lengthAt = this.#bytes.length;
    this.u16(0);
    const data = record.data;
    switch (data.kind) {
      case "A":
        this.bytes(parseIPv4(data.address));
        break;
      case "AAAA":
        this.bytes(parseIPv6(data.address));
        break;
      case "SRV":
        this.u16(data.priority);
        this.u16(data.weight);
        this.u16(data.port);
        this.name(data.target, false);
        break;
      case "raw":
        this.bytes(data.bytes);
        break;
    }
    const dataLength = this.#bytes.length - lengthAt - 2;
    this.#bytes[lengthAt] = dataLength >> 8;
    this.#bytes[lengthAt + 1] = dataLength & 0xff;
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.#bytes);
  }
}

function parseIPv4(address: string): number[] {
  if (!isIPv4(address)) throw new Error(`${address} is not an IPv4 address`);
  return address.split(".").map(Number);
}

function parseIPv6(address: string): number[] {
  if (!isIPv6(address)) throw new Error(`${address} is not an IPv6 address`);
  const toGroups = (part: string): number[] => {
    if (part === "") return [];
    const groups: number[] = [];
    for (const piece of part.split(":")) {
      if (piece.includes(".")) {
        const [a, b, c, d] = parseIPv4(piece);
        groups.push((a << 8) | b, (c << 8) | d);
      } else {
        groups.push(parseInt(piece, 16));
      }
    }
    return groups;
  };
  const [head, tail] = address.split("::");
  const before = toGroups(head);
  const after = tail === undefined ? [] : toGroups(tail);
  const groups = [...before, ...new Array<number>(8 - before.length - after.length).fill(0), ...after];
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}

/** RFC 5952 text form: lower-case hex, no leading zeros, the first longest zero run as `::`. */
function formatIPv6(bytes: Uint8Array): string {
  const groups = Array.from({ length: 8 }, (_, i) => (bytes[2 * i] << 8) | bytes[2 * i + 1]);
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j;
  }
  const hex = (list: number[]) => list.map((g) => g.toString(16)).join(":");
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}
