/**
 * The route table: compiled path templates in a segment trie, matched against request paths.
 *
 * Like hono's routers, the contract is two methods, `add` and `match`. A match walks the
 * request's segments down the trie (literal child first, then `*`, then `**`), so its cost
 * depends on the path, not on how many routes there are: every trie node sits at a fixed depth,
 * so a walk visits each node at most once. Taking children in that order makes the first route
 * found the most specific one, compared segment by segment from the left, whatever the order in
 * which routes were added.
 *
 * Decoding follows google/api/http.proto: literals match the percent-decoded segment; a
 * single-segment variable is fully decoded; a multi-segment variable is decoded except for
 * `%2F` / `%2f`, which stay as they arrived so the value still splits where the path did.
 * No wildcard matches an empty segment (`/v1/things/` does not match `/v1/things/{id}`).
 *
 * @example
 * ```ts
 * const router = new Router<string>();
 * router.add("GET", parsePathTemplate("/v1/{name=shelves/*}"), "GetShelf");
 * router.match("GET", "/v1/shelves/s1");
 * // { kind: "found", value: "GetShelf", variables: [[["name"], "shelves/s1"]] }
 * router.match("POST", "/v1/shelves/s1"); // { kind: "method-not-allowed", allow: ["GET"] }
 * ```
 */
import type { PathTemplate } from "./path-template.ts";
import { Code, ConnectError } from "./status.ts";

export type RouteMatch<T> =
  | {
      readonly kind: "found";
      readonly value: T;
      /** Field path and value of each variable, percent-decoded. */
      readonly variables: Array<readonly [fieldPath: readonly string[], value: string]>;
    }
  | { readonly kind: "not-found" }
  /** The path matches, but only for other HTTP methods (sorted, no duplicates). */
  | { readonly kind: "method-not-allowed"; readonly allow: string[] };

/** A route equivalent to one already added: same method, same segments and verb. */
export class RouteConflictError extends Error {
  override readonly name = "RouteConflictError";
  /** The value registered for the route that was there first. */
  readonly existing: unknown;
  constructor(message: string, existing: unknown) {
    super(message);
    this.existing = existing;
  }
}

/** The method key of a rule that matches any HTTP method (google.api.http custom kind "*"). */
const anyMethod = "*";
/** The verb key of routes without a verb (verbs are never empty). */
const noVerb = "";

interface Capture {
  readonly fieldPath: readonly string[];
  readonly start: number;
  /** Index after the last captured segment; undefined when a `**` runs to the path's end. */
  readonly end: number | undefined;
  /** `{x}` or `{x=*}` style: decoded completely, `%2F` included. */
  readonly singleSegment: boolean;
}

interface Route<T> {
  readonly httpMethod: string;
  readonly template: PathTemplate;
  readonly captures: readonly Capture[];
  readonly value: T;
}

class TrieNode<T> {
  readonly literals = new Map<string, TrieNode<T>>();
  singleWildcard: TrieNode<T> | undefined;
  /** `**` is always last, so this child holds only routes, never further segments. */
  deepWildcard: TrieNode<T> | undefined;
  /** Routes ending here: verb (or `noVerb`) → HTTP method (or `anyMethod`) → route. */
  readonly routes = new Map<string, Map<string, Route<T>>>();
}

/** A request path cut into segments, raw (still percent-encoded) and decoded. */
interface RequestSegments {
  readonly raw: readonly string[];
  readonly decoded: readonly string[];
  readonly verb: string;
  /** Index of the last empty segment, or -1: no wildcard matches from there or before. */
  readonly lastEmpty: number;
}

export class Router<T> {
  readonly #root = new TrieNode<T>();

  /** Adds a route; throws RouteConflictError if an equivalent route has the same method. */
  add(httpMethod: string, template: PathTemplate, value: T): void {
    let node = this.#root;
    for (const segment of template.segments) {
      if (segment.kind === "literal") {
        let child = node.literals.get(segment.value);
        if (child === undefined) node.literals.set(segment.value, (child = new TrieNode()));
        node = child;
      } else if (segment.kind === "*") {
        node = node.singleWildcard ??= new TrieNode();
      } else {
        node = node.deepWildcard ??= new TrieNode();
      }
    }
    const verbKey = template.verb ?? noVerb;
    let byMethod = node.routes.get(verbKey);
    if (byMethod === undefined) node.routes.set(verbKey, (byMethod = new Map()));
    const existing = byMethod.get(httpMethod);
    if (existing !== undefined) {
      throw new RouteConflictError(
        `${httpMethod} ${template.source} is equivalent to ${existing.httpMethod} ${existing.template.source}`,
        existing.value,
      );
    }
    byMethod.set(httpMethod, { httpMethod, template, captures: capturesOf(template), value });
  }

  /**
   * The most specific route for `httpMethod` and a raw request path (percent-encoded, without
   * the query). A route with a verb beats one without when the last segment could be read
   * either way. Throws ConnectError InvalidArgument for a malformed percent-escape.
   */
  match(httpMethod: string, path: string): RouteMatch<T> {
    if (path[0] !== "/") return { kind: "not-found" };
    const raw = path === "/" ? [] : path.slice(1).split("/");
    const decoded = raw.map(decodeComponent);
    const allowed = new Set<string>();
    const interpretations: RequestSegments[] = [];
    const last = raw.length - 1;
    const colon = last < 0 ? -1 : raw[last].lastIndexOf(":");
    if (colon >= 0) {
      // An escape cannot contain ":", so both halves of a well-formed segment are well-formed.
      const beforeVerb = raw[last].slice(0, colon);
      const verb = decodeComponent(raw[last].slice(colon + 1));
      // "/:verb" is the verb after zero segments (for "/**:verb"), not after an empty one.
      const kept = last === 0 && beforeVerb === "" ? [] : [beforeVerb];
      interpretations.push(
        requestSegments(
          [...raw.slice(0, last), ...kept],
          [...decoded.slice(0, last), ...kept.map(decodeComponent)],
          verb,
        ),
      );
    }
    interpretations.push(requestSegments(raw, decoded, noVerb));
    for (const request of interpretations) {
      const route = find(this.#root, 0, request, httpMethod, allowed);
      if (route !== undefined) {
        return { kind: "found", value: route.value, variables: variablesOf(route, request) };
      }
    }
    if (allowed.size === 0) return { kind: "not-found" };
    return { kind: "method-not-allowed", allow: [...allowed].sort() };
  }
}

/**
 * Depth-first, most specific child first; returns the first route that takes `httpMethod`,
 * and collects into `allowed` the methods of the routes passed over on the way.
 */
function find<T>(
  node: TrieNode<T>,
  depth: number,
  request: RequestSegments,
  httpMethod: string,
  allowed: Set<string>,
): Route<T> | undefined {
  const { decoded } = request;
  if (depth === decoded.length) {
    return (
      routeAt(node, request.verb, httpMethod, allowed) ??
      routeAtDeepWildcard(node, depth, request, httpMethod, allowed)
    );
  }
  const literal = node.literals.get(decoded[depth]);
  if (literal !== undefined) {
    const route = find(literal, depth + 1, request, httpMethod, allowed);
    if (route !== undefined) return route;
  }
  if (node.singleWildcard !== undefined && decoded[depth] !== "") {
    const route = find(node.singleWildcard, depth + 1, request, httpMethod, allowed);
    if (route !== undefined) return route;
  }
  return routeAtDeepWildcard(node, depth, request, httpMethod, allowed);
}

/** `**` takes all the remaining segments (possibly none) if none is empty. */
function routeAtDeepWildcard<T>(
  node: TrieNode<T>,
  depth: number,
  request: RequestSegments,
  httpMethod: string,
  allowed: Set<string>,
): Route<T> | undefined {
  if (node.deepWildcard === undefined || request.lastEmpty >= depth) return undefined;
  return routeAt(node.deepWildcard, request.verb, httpMethod, allowed);
}

function routeAt<T>(
  node: TrieNode<T>,
  verb: string,
  httpMethod: string,
  allowed: Set<string>,
): Route<T> | undefined {
  const byMethod = node.routes.get(verb);
  if (byMethod === undefined) return undefined;
  const route = byMethod.get(httpMethod) ?? byMethod.get(anyMethod);
  if (route === undefined) for (const method of byMethod.keys()) allowed.add(method);
  return route;
}

function requestSegments(raw: readonly string[], decoded: readonly string[], verb: string): RequestSegments {
  return { raw, decoded, verb, lastEmpty: decoded.lastIndexOf("") };
}

function capturesOf(template: PathTemplate): Capture[] {
  return template.variables.map((v) => {
    const runsToEnd = template.segments[v.end - 1]?.kind === "**";
    return {
      fieldPath: v.fieldPath,
      start: v.start,
      end: runsToEnd ? undefined : v.end,
      singleSegment: v.end - v.start === 1 && !runsToEnd,
    };
  });
}

function variablesOf<T>(route: Route<T>, request: RequestSegments): Array<readonly [readonly string[], string]> {
  return route.captures.map((c) => {
    if (c.singleSegment) return [c.fieldPath, request.decoded[c.start]] as const;
    const segments = request.raw.slice(c.start, c.end).map(decodeKeepingSlashes);
    return [c.fieldPath, segments.join("/")] as const;
  });
}

const encodedSlash = /(%2[Ff])/;

/** Decodes all but `%2F` / `%2f` (a byte that never occurs inside a multi-byte UTF-8 sequence). */
function decodeKeepingSlashes(segment: string): string {
  if (!segment.includes("%")) return segment;
  return segment
    .split(encodedSlash)
    .map((part, i) => (i % 2 === 1 ? part : decodeComponent(part)))
    .join("");
}

function decodeComponent(text: string): string {
  if (!text.includes("%")) return text;
  try {
    return decodeURIComponent(text);
  } catch {
    throw new ConnectError(`malformed percent-encoding in request path segment "${text}"`, Code.InvalidArgument);
  }
}
