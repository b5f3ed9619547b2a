/**
 * google.api.http path templates (google/api/http.proto), parsed once at start-up:
 *
 * ```
 * Template  = "/" Segments [ Verb ] ;
 * Segments  = Segment { "/" Segment } ;
 * Segment   = "*" | "**" | LITERAL | Variable ;
 * Variable  = "{" FieldPath [ "=" Segments ] "}" ;
 * FieldPath = IDENT { "." IDENT } ;
 * Verb      = ":" LITERAL ;
 * ```
 *
 * The template is flattened into segments; each variable names the range of segments it
 * captures. `{var}` is `{var=*}`. The template "/" (no segments) is accepted for the root path,
 * as grpc-gateway does.
 *
 * @example
 * ```ts
 * const t = parsePathTemplate("/v1/{name=shelves/*}/books:watch");
 * t.segments;  // [{kind:"literal",value:"v1"}, {kind:"literal",value:"shelves"}, {kind:"*"}, {kind:"literal",value:"books"}]
 * t.variables; // [{fieldPath:["name"], start:1, end:3}]
 * t.verb;      // "watch"
 * ```
 */

export type PathSegment =
  /** Matches one request segment equal to `value` once percent-decoded. */
  | { readonly kind: "literal"; readonly value: string }
  /** Matches one request segment. */
  | { readonly kind: "*" }
  /** Matches zero or more request segments; only ever the last segment. */
  | { readonly kind: "**" };

export interface TemplateVariable {
  /** Proto field names, from `{a.b.c}`. */
  readonly fieldPath: readonly string[];
  /** Index of the first segment the variable captures. */
  readonly start: number;
  /** Index after the last segment it captures (a `**` there captures up to the path's end). */
  readonly end: number;
}

export interface PathTemplate {
  /** The template text as written in the rule. */
  readonly source: string;
  readonly segments: readonly PathSegment[];
  readonly variables: readonly TemplateVariable[];
  /** The custom verb after ":" (percent-decoded), or undefined. */
  readonly verb: string | undefined;
}

/** A template that does not follow the grammar; `offset` is where in `source` it goes wrong. */
export class PathTemplateError extends Error {
  override readonly name = "PathTemplateError";
  readonly source: string;
  readonly offset: number;
  constructor(source: string, offset: number, reason: string) {
    super(`${reason} (at offset ${offset})`);
    this.source = source;
    this.offset = offset;
  }
}

const identifier = /[A-Za-z_][A-Za-z0-9_]*/y;
/** What a field name was meant to be, for the error message when it is not an identifier. */
const fieldPathWord = /[^.=}/]*/y;
/**
 * RFC 3986 pchar minus the characters the grammar itself uses ("/", "*", "{", "}", ":") and
 * "%" (escapes are read separately).
 */
const literalChars = "[A-Za-z0-9\\-._~!$&'()+,;=@]";
const literalRun = new RegExp(`${literalChars}+`, "y");
const literalChar = new RegExp(`^${literalChars}$`);
const escape = /%[0-9A-Fa-f]{2}/y;

/** Parses a google.api.http path template; throws PathTemplateError naming what and where. */
export function parsePathTemplate(source: string): PathTemplate {
  return new Parser(source).template();
}

class Parser {
  readonly #source: string;
  #at = 0;
  readonly #segments: PathSegment[] = [];
  readonly #variables: TemplateVariable[] = [];
  /** Offset of a `**` already read: nothing but the verb may follow it. */
  #deepWildcardAt = -1;

  constructor(source: string) {
    this.#source = source;
  }

  template(): PathTemplate {
    const source = this.#source;
    if (source[0] !== "/") this.#fail('a path template must start with "/"');
    this.#at = 1;
    let verb: string | undefined;
    if (source !== "/") {
      this.#segmentList(false);
      if (this.#peek() === ":") {
        this.#at++;
        verb = this.#literal("verb");
      }
      const c = this.#peek();
      if (verb !== undefined && c === ":") this.#fail('a verb may not contain ":"');
      if (verb !== undefined && c !== undefined && "/{*".includes(c)) this.#fail("the verb must come last");
      if (c !== undefined) this.#unexpected();
    }
    return { source, segments: this.#segments, variables: this.#variables, verb };
  }

  #segmentList(inVariable: boolean): void {
    for (;;) {
      this.#segment(inVariable);
      if (this.#peek() !== "/") return;
      this.#at++;
    }
  }

  #segment(inVariable: boolean): void {
    if (this.#deepWildcardAt >= 0) {
      this.#fail('"**" must be the last segment', this.#deepWildcardAt);
    }
    const c = this.#peek();
    if (c === "{") {
      if (inVariable) this.#fail("variables must not nest");
      this.#variable();
    } else if (c === "*") {
      const deep = this.#source[this.#at + 1] === "*";
      if (deep) this.#deepWildcardAt = this.#at;
      this.#at += deep ? 2 : 1;
      this.#segments.push({ kind: deep ? "**" : "*" });
    } else if (c === undefined || c === "/" || c === ":" || c === "}") {
      this.#fail("empty segment");
    } else {
      this.#segments.push({ kind: "literal", value: this.#literal("literal") });
    }
    this.#expectSegmentEnd(inVariable);
  }

  /** A segment is a whole `*`, `**`, literal or variable: "a*" or "x{y}" is not one. */
  #expectSegmentEnd(inVariable: boolean): void {
    const c = this.#peek();
    if (c === undefined || c === "/" || c === ":" || (inVariable && c === "}")) return;
    if (c === "*" || c === "{") this.#fail(`"${c}" must start a segment of its own`);
    if (!literalChar.test(c)) this.#unexpected();
    const expected = inVariable ? '"/", ":", "}"' : '"/", ":"';
    this.#fail(`expected ${expected} or the end after a segment, found ${JSON.stringify(c)}`);
  }

  #variable(): void {
    const open = this.#at++;
    const fieldPath = this.#fieldPath();
    const start = this.#segments.length;
    if (this.#peek() === "=") {
      this.#at++;
      this.#segmentList(true);
    } else if (this.#peek() === "}") {
      this.#segments.push({ kind: "*" });
    } else if (this.#peek() !== undefined) {
      this.#fail('expected "=" or "}" after the field path');
    }
    if (this.#peek() === undefined) this.#fail(`"{" at offset ${open} is never closed`);
    if (this.#peek() !== "}") this.#unexpected();
    this.#at++;
    const name = fieldPath.join(".");
    if (this.#variables.some((v) => v.fieldPath.join(".") === name)) {
      this.#fail(`field path "${name}" is bound more than once`, open + 1);
    }
    this.#variables.push({ fieldPath, start, end: this.#segments.length });
  }

  #fieldPath(): string[] {
    const names: string[] = [];
    for (;;) {
      identifier.lastIndex = this.#at;
      const name = identifier.exec(this.#source)?.[0] ?? "";
      fieldPathWord.lastIndex = this.#at;
      const text = fieldPathWord.exec(this.#source)![0];
      if (text === "") this.#fail("expected a field name");
      if (name !== text) this.#fail(`"${text}" is not a field name`);
      names.push(name);
      this.#at += name.length;
      if (this.#peek() !== ".") return names;
      this.#at++;
    }
  }

  /** A run of literal characters and %XX escapes, returned percent-decoded. */
  #literal(what: "literal" | "verb"): string {
    const start = this.#at;
    for (;;) {
      const pattern = this.#peek() === "%" ? escape : literalRun;
      pattern.lastIndex = this.#at;
      const m = pattern.exec(this.#source);
      if (m === null) break;
      this.#at += m[0].length;
    }
    if (this.#at === start) {
      if (what === "verb") this.#fail("empty verb");
      this.#unexpected();
    }
    const text = this.#source.slice(start, this.#at);
    try {
      return decodeURIComponent(text);
    } catch {
      return this.#fail(`${what} "${text}" is not valid percent-encoded UTF-8`, start);
    }
  }

  #peek(): string | undefined {
    return this.#source[this.#at];
  }

  #unexpected(): never {
    const c = this.#peek();
    if (c === undefined) this.#fail("unexpected end of template");
    if (c === "%") this.#fail('"%" must start an escape of two hex digits');
    if (c === "}") this.#fail('"}" without a matching "{"');
    if (c === ":") this.#fail('":" may only start the verb, after the last segment');
    if ("/{*".includes(c)) this.#fail(`unexpected ${JSON.stringify(c)}`);
    this.#fail(`unexpected ${JSON.stringify(c)}; characters outside RFC 3986 pchar must be percent-encoded`);
  }

  #fail(reason: string, offset = this.#at): never {
    throw new PathTemplateError(this.#source, offset, reason);
  }
}
