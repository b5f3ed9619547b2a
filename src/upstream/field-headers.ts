/**
 * Connect metadata (a Web `Headers`) over a header block node:http2 has already parsed.
 *
 * A real `Headers` validates every name and value and sorts on each iteration: about 1 µs per
 * header block, twice per call (headers and trailers), for metadata that is usually read once.
 * This one answers reads straight from the parsed fields and becomes an ordinary `Headers`
 * (filled from them) only when something changes it. Pseudo-headers are not metadata and are
 * left out, as connect-node leaves them out.
 *
 * node:http2's parsed object has a null prototype, so V8 keeps it in dictionary mode: a lookup
 * is a hash probe, but walking its keys costs ~70 ns per name. Iteration therefore reads the flat
 * name/value list node:http2 also hands to its listeners, when it has one.
 */
import type { IncomingHttpHeaders } from "node:http2";

export class FieldHeaders extends Headers {
  /** Until the first change; then undefined and `super` holds everything. */
  #fields: IncomingHttpHeaders | undefined;
  /** The same fields as received: name, value, name, value, … */
  #fieldList: readonly string[] | undefined;
  #entries: Array<[string, string]> | undefined;

  constructor(fields: IncomingHttpHeaders, fieldList?: readonly string[]) {
    super();
    this.#fields = fields;
    this.#fieldList = fieldList;
  }

  /** The entries as `Headers` iterates them: names sorted, set-cookie values one by one. */
  #pairs(fields: IncomingHttpHeaders): Array<[string, string]> {
    if (this.#entries !== undefined) return this.#entries;
    const listed = this.#fieldList === undefined ? undefined : pairsOfList(this.#fieldList);
    if (listed !== undefined) return (this.#entries = listed);
    const pairs: Array<[string, string]> = [];
    for (const name in fields) {
      const value = fields[name];
      if (name.charCodeAt(0) === 58 /* ":" */ || value === undefined) continue;
      if (name === "set-cookie" && Array.isArray(value)) for (const cookie of value) pairs.push([name, cookie]);
      else pairs.push([name, joined(value)!]);
    }
    return (this.#entries = sortByName(pairs));
  }

  /** The fields moved into the real Headers, before a change. Values Headers refuses are dropped. */
  #own(): void {
    const fields = this.#fields;
    if (fields === undefined) return;
    this.#fields = undefined;
    this.#fieldList = undefined;
    this.#entries = undefined;
    for (const name in fields) {
      const value = fields[name];
      if (name.charCodeAt(0) === 58 /* ":" */ || value === undefined) continue;
      try {
        if (Array.isArray(value)) for (const v of value) super.append(name, v);
        else super.append(name, String(value));
      } catch {
        // As toHeaders does: a value Headers refuses is dropped rather than failing the call.
      }
    }
  }

  override get(name: string): string | null {
    const fields = this.#fields;
    if (fields === undefined) return super.get(name);
    if (!headerName.test(name)) throw new TypeError(`Headers.get: "${name}" is an invalid header name.`);
    return joined(fields[name.toLowerCase()]);
  }

  override has(name: string): boolean {
    return this.get(name) !== null;
  }

  override getSetCookie(): string[] {
    const fields = this.#fields;
    if (fields === undefined) return super.getSetCookie();
    const value = fields["set-cookie"];
    return value === undefined ? [] : Array.isArray(value) ? [...value] : [String(value)];
  }

  override append(name: string, value: string): void {
    this.#own();
    super.append(name, value);
  }

  override set(name: string, value: string): void {
    this.#own();
    super.set(name, value);
  }

  override delete(name: string): void {
    this.#own();
    super.delete(name);
  }

  override forEach(callback: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void {
    for (const [key, value] of this) callback.call(thisArg, value, key, this);
  }

  override entries(): HeadersIterator<[string, string]> {
    const fields = this.#fields;
    if (fields === undefined) return super.entries();
    return this.#pairs(fields)[Symbol.iterator]() as HeadersIterator<[string, string]>;
  }

  override keys(): HeadersIterator<string> {
    const fields = this.#fields;
    if (fields === undefined) return super.keys();
    return this.#pairs(fields).map(([key]) => key)[Symbol.iterator]() as HeadersIterator<string>;
  }

  override values(): HeadersIterator<string> {
    const fields = this.#fields;
    if (fields === undefined) return super.values();
    return this.#pairs(fields).map(([, value]) => value)[Symbol.iterator]() as HeadersIterator<string>;
  }

  override [Symbol.iterator](): HeadersIterator<[string, string]> {
    return this.entries();
  }
}

/**
 * The pairs of a received field list, sorted; undefined when a name repeats, where node:http2's
 * object (which joins, or keeps the first of, repeated fields) is what Headers must reflect.
 */
function pairsOfList(list: readonly string[]): Array<[string, string]> | undefined {
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i + 1 < list.length; i += 2) {
    const name = list[i];
    if (name.charCodeAt(0) !== 58 /* ":" */) pairs.push([name, joined(list[i + 1])!]);
  }
  sortByName(pairs);
  for (let i = 1; i < pairs.length; i++) if (pairs[i][0] === pairs[i - 1][0]) return undefined;
  return pairs;
}

/**
 * Sorted by name in place. A block holds a handful of names: an insertion sort is many times
 * faster here than Array#sort, and stable, so repeated set-cookie values keep their order.
 */
function sortByName(pairs: Array<[string, string]>): Array<[string, string]> {
  for (let i = 1; i < pairs.length; i++) {
    const pair = pairs[i];
    let j = i - 1;
    for (; j >= 0 && pairs[j][0] > pair[0]; j--) pairs[j + 1] = pairs[j];
    pairs[j + 1] = pair;
  }
  return pairs;
}

/** One value as `Headers.get` gives it: repeated values joined with ", ", outer whitespace stripped. */
function joined(value: string | string[] | undefined): string | null {
  if (value === undefined) return null;
  const text = Array.isArray(value) ? value.join(", ") : String(value);
  return httpWhitespace.test(text) ? text.replace(outerWhitespace, "") : text;
}

/** An HTTP field name (RFC 9110 token), what Headers accepts. */
const headerName = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Headers strips HTTP whitespace (tab, space, CR, LF) only, not all that String.trim does. */
const httpWhitespace = /^[\t\n\r ]|[\t\n\r ]$/;
const outerWhitespace = /^[\t\n\r ]+|[\t\n\r ]+$/g;
