/**
 * Label and field selectors as the Kubernetes API server parses them (apimachinery's
 * `labels.Parse` and `fields.ParseSelector`), for the API stand-in. Pure: no I/O.
 *
 * Label grammar: comma-joined requirements, each one of
 * `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (v1,v2)`, `k notin (v1,v2)`, `k>n`, `k<n`.
 * `!=` and `notin` also match objects without the key, as the real server does.
 */

export type Labels = Readonly<Record<string, string>>;

type Requirement =
  | { readonly op: "exists" | "!exists"; readonly key: string }
  | { readonly op: "in" | "notin"; readonly key: string; readonly values: ReadonlySet<string> }
  | { readonly op: "gt" | "lt"; readonly key: string; readonly bound: number };

export interface Selector {
  matches(labels: Labels | undefined): boolean;
}

export class SelectorError extends Error {}

/** Parses a label selector; the empty string selects everything. Throws SelectorError. */
export function parseLabelSelector(text: string): Selector {
  const requirements = new LabelParser(text).parse();
  return { matches: (labels) => requirements.every((r) => satisfies(r, labels ?? {})) };
}

function satisfies(r: Requirement, labels: Labels): boolean {
  const has = Object.hasOwn(labels, r.key);
  switch (r.op) {
    case "exists":
      return has;
    case "!exists":
      return !has;
    case "in":
      return has && r.values.has(labels[r.key]);
    case "notin":
      return !has || !r.values.has(labels[r.key]);
    case "gt":
    case "lt": {
      if (!has || !/^-?\d+$/.test(labels[r.key])) return false;
      const n = Number(labels[r.key]);
      return r.op === "gt" ? n > r.bound : n < r.bound;
    }
  }
}

// Keys: an optional DNS-subdomain prefix and "/", then a name; values: the name alphabet, maybe empty.
const keyPattern = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const valuePattern = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

type Token =
  | { readonly kind: "word"; readonly text: string }
  | { readonly kind: "op"; readonly text: "=" | "==" | "!=" | "!" | "(" | ")" | "," | ">" | "<" };

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === " " || c === "\t" || c === "\n") {
      i++;
    } else if (text.startsWith("==", i) || text.startsWith("!=", i)) {
      tokens.push({ kind: "op", text: text.slice(i, i + 2) as "==" | "!=" });
      i += 2;
    } else if ("=!(),<>".includes(c)) {
      tokens.push({ kind: "op", text: c as "=" | "!" | "(" | ")" | "," | ">" | "<" });
      i++;
    } else {
      let j = i;
      while (j < text.length && !" \t\n=!(),<>".includes(text[j])) j++;
      tokens.push({ kind: "word", text: text.slice(i, j) });
      i = j;
    }
  }
  return tokens;
}

class LabelParser {
  readonly #text: string;
  readonly #tokens: Token[];
  #at = 0;

  constructor(text: string) {
    this.#text = text;
    this.#tokens = tokenize(text);
  }

  parse(): Requirement[] {
    const requirements: Requirement[] = [];
    if (this.#tokens.length === 0) return requirements;
    for (;;) {
      requirements.push(this.#requirement());
      const next = this.#next();
      if (next === undefined) return requirements;
      if (next.text !== ",") this.#fail(`found '${next.text}', expected: ','`);
    }
  }

  #requirement(): Requirement {
    if (this.#peek()?.text === "!") {
      this.#at++;
      return { op: "!exists", key: this.#key() };
    }
    const key = this.#key();
    const op = this.#peek();
    if (op === undefined || op.text === ",") return { op: "exists", key };
    this.#at++;
    if (op.text === "=" || op.text === "==" || op.text === "!=") {
      const value = this.#value(true);
      return { op: op.text === "!=" ? "notin" : "in", key, values: new Set([value]) };
    }
    if (op.text === ">" || op.text === "<") {
      const bound = this.#value(false);
      if (!/^-?\d+$/.test(bound)) this.#fail(`for 'gt', 'lt' operators, the value must be an integer`);
      return { op: op.text === ">" ? "gt" : "lt", key, bound: Number(bound) };
    }
    if (op.kind === "word" && (op.text === "in" || op.text === "notin")) {
      return { op: op.text, key, values: this.#valueSet() };
    }
    return this.#fail(`found '${op.text}', expected: in, notin, =, ==, !=, gt, lt`);
  }

  #key(): string {
    const token = this.#next();
    if (token?.kind !== "word") return this.#fail(`found '${token?.text ?? ""}', expected: identifier`);
    if (!keyPattern.test(token.text)) this.#fail(`invalid label key "${token.text}"`);
    return token.text;
  }

  /** A value; `a=` (nothing or a comma next) is the empty value when `mayBeEmpty`. */
  #value(mayBeEmpty: boolean): string {
    const token = this.#peek();
    if (token?.kind === "word") {
      this.#at++;
      if (!valuePattern.test(token.text)) this.#fail(`invalid label value: "${token.text}"`);
      return token.text;
    }
    if (mayBeEmpty && (token === undefined || token.text === ",")) return "";
    return this.#fail(`found '${token?.text ?? ""}', expected: identifier`);
  }

  #valueSet(): Set<string> {
    if (this.#next()?.text !== "(") this.#fail("expected: '('");
    const values = new Set<string>();
    for (;;) {
      const token = this.#peek();
      if (token?.text === ")") {
        this.#at++;
        if (values.size === 0) this.#fail("for 'in', 'notin' operators, values set can't be empty");
        return values;
      }
      values.add(this.#value(true));
      const separator = this.#next();
      if (separator?.text === ")") return values;
      if (separator?.text !== ",") this.#fail(`found '${separator?.text ?? ""}', expected: ',' or ')'`);
    }
  }

  #peek(): Token | undefined {
    return this.#tokens[this.#at];
  }

  #next(): Token | undefined {
    return this.#tokens[this.#at++];
  }

  #fail(why: string): never {
    throw new SelectorError(`unable to parse requirement: ${why} in "${this.#text}"`);
  }
}

/** The fields a selector may name, and how to read them from an object. */
export type FieldReader = (object: unknown, field: string) => string | undefined;

/** Parses a field selector (`f=v`, `f==v`, `f!=v`, comma-joined). Throws SelectorError for unknown fields. */
export function parseFieldSelector(text: string, read: FieldReader, supported: readonly string[]) {
  const terms = text
    .split(",")
    .filter((term) => term.trim() !== "")
    .map((term) => {
      const m = /^\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*$/.exec(term);
      if (m === null) throw new SelectorError(`invalid selector: '${text}'; can't understand '${term}'`);
      const [, field, op, value] = m;
      if (!supported.includes(field)) throw new SelectorError(`field label not supported: ${field}`);
      return { field, equal: op !== "!=", value };
    });
  return {
    matches: (object: unknown) => terms.every((t) => (read(object, t.field) === t.value) === t.equal),
  };
}
