import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { parsePathTemplate } from "./path-template.ts";
import { RouteConflictError, Router, type RouteMatch } from "./router.ts";
import { Code, ConnectError } from "./status.ts";

/** A router whose values are the rules themselves ("GET /v1/x"), added in the given order. */
function routerOf(rules: readonly string[]): Router<string> {
  const router = new Router<string>();
  for (const rule of rules) {
    const [method, template] = rule.split(" ");
    router.add(method, parsePathTemplate(template), rule);
  }
  return router;
}

/** A match in the notation of the tables: the rule found and its variables, or the failure. */
function outcome(match: RouteMatch<string>): unknown {
  if (match.kind === "found") {
    return [match.value, Object.fromEntries(match.variables.map(([path, value]) => [path.join("."), value]))];
  }
  return match.kind === "method-not-allowed" ? `405 allow ${match.allow.join(",")}` : "404";
}

function checkTable(router: Router<string>, table: ReadonlyArray<readonly [request: string, expected: unknown]>) {
  for (const [request, expected] of table) {
    const [method, path] = request.split(" ");
    assert.deepEqual(outcome(router.match(method, path)), expected, request);
  }
}

const mirrorRules = [
  "GET /v1/mirror/{s}/{i64}",
  "GET /v1/by-name/{name=things/*/parts/*}",
  "GET /v1/files/{name=files/**}",
  "POST /v1/mirror",
  "PUT /v1/mirror/{s}",
  "POST /v1/mirror/{s}/nested",
  "PATCH /v1/{name=things/*}",
  "POST /v1/mirror/{s}:shout",
  "DELETE /v1/mirror/{s}",
  "GET /v1/mirror/{s}/nested-only",
  "GET /v1/stream/{count}",
  "POST /v1/collect",
  "GET /v1/whoami",
];

describe("Router: the mirror API", () => {
  const router = routerOf(mirrorRules);
  const table = [
    ["GET /v1/mirror/abc/42", ["GET /v1/mirror/{s}/{i64}", { s: "abc", i64: "42" }]],
    ["GET /v1/mirror/a%2Fb/1", ["GET /v1/mirror/{s}/{i64}", { s: "a/b", i64: "1" }]],
    ["GET /v1/mirror/hello%20world/-42", ["GET /v1/mirror/{s}/{i64}", { s: "hello world", i64: "-42" }]],
    ["GET /v1/mirror/caf%C3%A9+x/1", ["GET /v1/mirror/{s}/{i64}", { s: "café+x", i64: "1" }]],
    ["GET /v1/mirror/abc/nested-only", ["GET /v1/mirror/{s}/nested-only", { s: "abc" }]],
    ["GET /v1/mirror/abc/nested%2Donly", ["GET /v1/mirror/{s}/nested-only", { s: "abc" }]],
    ["GET /v1/by-name/things/a%2Fb/parts/p1", ["GET /v1/by-name/{name=things/*/parts/*}", { name: "things/a%2Fb/parts/p1" }]],
    ["GET /v1/by-name/things/a%2fb%20c/parts/p1", ["GET /v1/by-name/{name=things/*/parts/*}", { name: "things/a%2fb c/parts/p1" }]],
    ["GET /v1/files/files/dir/sub/x.txt", ["GET /v1/files/{name=files/**}", { name: "files/dir/sub/x.txt" }]],
    ["GET /v1/files/files", ["GET /v1/files/{name=files/**}", { name: "files" }]],
    ["GET /v1/files/other/x", "404"],
    ["POST /v1/mirror/loud:shout", ["POST /v1/mirror/{s}:shout", { s: "loud" }]],
    ["POST /v1/mirror/a:b:shout", ["POST /v1/mirror/{s}:shout", { s: "a:b" }]],
    ["PUT /v1/mirror/loud:shout", ["PUT /v1/mirror/{s}", { s: "loud:shout" }]],
    ["PATCH /v1/things/t1", ["PATCH /v1/{name=things/*}", { name: "things/t1" }]],
    ["GET /v1/whoami", ["GET /v1/whoami", {}]],
    ["GET /v1/mirror", "405 allow POST"],
    ["GET /v1/mirror/x", "405 allow DELETE,PUT"],
    ["DELETE /v1/mirror/x/nested", "405 allow GET,POST"],
    ["GET /v1/nothing", "404"],
    ["GET /", "404"],
    ["GET /v1/whoami/", "404"],
    ["GET /v1/mirror//1", "404"],
  ] as const;
  test("variables are captured and decoded as google/api/http.proto says", () => checkTable(router, table));
});

describe("Router: wildcards", () => {
  const router = routerOf([
    "GET /v1/one/*",
    "GET /v1/deep/**",
    "GET /v1/{name=things/**}",
    "GET /**:verb",
    "GET /v1/root/{rest=**}:export",
  ]);
  const table = [
    ["GET /v1/one/x", ["GET /v1/one/*", {}]],
    ["GET /v1/one", "404"],
    ["GET /v1/one/x/y", "404"],
    ["GET /v1/deep", ["GET /v1/deep/**", {}]],
    ["GET /v1/deep/a/b/c", ["GET /v1/deep/**", {}]],
    ["GET /v1/deep/a//c", "404"],
    ["GET /v1/things", ["GET /v1/{name=things/**}", { name: "things" }]],
    ["GET /v1/things/a%2Fb/c%20d", ["GET /v1/{name=things/**}", { name: "things/a%2Fb/c d" }]],
    ["GET /:verb", ["GET /**:verb", {}]],
    ["GET /a/b:verb", ["GET /**:verb", {}]],
    ["GET /v1/root:export", ["GET /v1/root/{rest=**}:export", { rest: "" }]],
    ["GET /v1/root/x/y:export", ["GET /v1/root/{rest=**}:export", { rest: "x/y" }]],
  ] as const;
  test("* takes one non-empty segment, ** any number of them (zero too)", () => checkTable(router, table));
});

describe("Router: custom verbs", () => {
  const router = routerOf([
    "GET /v1/{name=shelves/*/books/*}",
    "POST /v1/{name=shelves/*/books/*}:archive",
    "POST /v1/shelves/{shelf}/books/{book}",
    "GET /v1/{parent=shelves/*}/books:watch",
  ]);
  const table = [
    ["POST /v1/shelves/1/books/1:archive", ["POST /v1/{name=shelves/*/books/*}:archive", { name: "shelves/1/books/1" }]],
    ["POST /v1/shelves/1/books/1", ["POST /v1/shelves/{shelf}/books/{book}", { shelf: "1", book: "1" }]],
    // Without a route for GET with the verb, the whole last segment is an ordinary segment.
    ["GET /v1/shelves/1/books/1:archive", ["GET /v1/{name=shelves/*/books/*}", { name: "shelves/1/books/1:archive" }]],
    ["GET /v1/shelves/1/books:watch", ["GET /v1/{parent=shelves/*}/books:watch", { parent: "shelves/1" }]],
    ["GET /v1/shelves/1/books:other", "404"],
    ["GET /v1/shelves/1/books:watch%21", "404"],
    ["GET /v1/shelves/1/books%3Awatch", "404"],
    ["DELETE /v1/shelves/1/books:watch", "405 allow GET"],
  ] as const;
  test("a verb route beats a verb-less one; an encoded colon is no verb separator", () => checkTable(router, table));

  test("verbs are percent-decoded like literals", () => {
    const router = routerOf(["POST /v1/x:do%21"]);
    checkTable(router, [
      ["POST /v1/x:do!", ["POST /v1/x:do%21", {}]],
      ["POST /v1/x:%64o%21", ["POST /v1/x:do%21", {}]],
      ["POST /v1/x:do", "404"],
    ]);
  });
});

/** Every ordering of `items` (n! of them; keep n small). */
function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((item, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]),
  );
}

describe("Router: precedence", () => {
  const rules = [
    "GET /v1/shelves/special/books/{book}",
    "GET /v1/shelves/{shelf}/books/{book}",
    "GET /v1/shelves/{shelf}/books/latest",
    "GET /v1/shelves/{shelf}/{rest=**}",
    "GET /v1/*/books/{book}",
    "GET /v1/{name=**}",
  ];
  const table = [
    ["GET /v1/shelves/special/books/b1", ["GET /v1/shelves/special/books/{book}", { book: "b1" }]],
    ["GET /v1/shelves/s1/books/b1", ["GET /v1/shelves/{shelf}/books/{book}", { shelf: "s1", book: "b1" }]],
    ["GET /v1/shelves/s1/books/latest", ["GET /v1/shelves/{shelf}/books/latest", { shelf: "s1" }]],
    // Compared from the left: the literal "special" decides before "latest" is looked at.
    ["GET /v1/shelves/special/books/latest", ["GET /v1/shelves/special/books/{book}", { book: "latest" }]],
    ["GET /v1/shelves/s1/other/x", ["GET /v1/shelves/{shelf}/{rest=**}", { shelf: "s1", rest: "other/x" }]],
    ["GET /v1/shelves/s1", ["GET /v1/shelves/{shelf}/{rest=**}", { shelf: "s1", rest: "" }]],
    ["GET /v1/racks/books/b1", ["GET /v1/*/books/{book}", { book: "b1" }]],
    ["GET /v1/shelves", ["GET /v1/{name=**}", { name: "shelves" }]],
    ["GET /v1/racks/r1/books", ["GET /v1/{name=**}", { name: "racks/r1/books" }]],
  ] as const;

  test("the most specific template wins, in every insertion order", () => {
    const orders = permutations(rules);
    assert.equal(orders.length, 720);
    for (const order of orders) checkTable(routerOf(order), table);
  });

  test("a route for the request's method beats a more specific route for another method", () => {
    const router = routerOf(["POST /v1/things/special", "GET /v1/things/{id}"]);
    checkTable(router, [["GET /v1/things/special", ["GET /v1/things/{id}", { id: "special" }]]]);
  });
});

describe("Router: methods", () => {
  test("405 lists the methods of every route matching the path, sorted, once each", () => {
    const router = routerOf(["PUT /v1/a/{x}", "DELETE /v1/{name=a/*}:go", "GET /v1/a/b", "PUT /v1/a/b", "PATCH /v1/*/b"]);
    checkTable(router, [
      ["POST /v1/a/b", "405 allow GET,PATCH,PUT"],
      // With the verb, DELETE matches; read as a plain segment, "b:go" matches only PUT /v1/a/{x}.
      ["POST /v1/a/b:go", "405 allow DELETE,PUT"],
      ["POST /v1/a/c", "405 allow PUT"],
    ]);
  });

  test('a "*" rule takes any method; a rule for the exact method beats it', () => {
    for (const order of permutations(["* /v1/any/{x}", "GET /v1/any/{y}", "* /v1/any/fixed"])) {
      checkTable(routerOf(order), [
        ["DELETE /v1/any/thing", ["* /v1/any/{x}", { x: "thing" }]],
        ["GET /v1/any/thing", ["GET /v1/any/{y}", { y: "thing" }]],
        ["GET /v1/any/fixed", ["* /v1/any/fixed", {}]],
        ["GET /v1/any", "404"],
      ]);
    }
  });
});

describe("Router: conflicts", () => {
  const table: Array<[first: string, second: string]> = [
    ["GET /v1/{a}", "GET /v1/{b}"],
    ["GET /v1/{a}/{b}", "GET /v1/{c=*/*}"],
    ["GET /v1/{name=things/*}", "GET /v1/things/{id}"],
    ["GET /v1/{p=**}", "GET /v1/**"],
    ["POST /v1/{a}:go", "POST /v1/*:go"],
    ["* /v1/x", "* /v1/x"],
  ];
  for (const [first, second] of table) {
    test(`${second} conflicts with ${first}`, () => {
      const router = new Router<string>();
      router.add(first.split(" ")[0], parsePathTemplate(first.split(" ")[1]), "first");
      assert.throws(
        () => router.add(second.split(" ")[0], parsePathTemplate(second.split(" ")[1]), "second"),
        (e: unknown) =>
          e instanceof RouteConflictError &&
          e.existing === "first" &&
          e.message === `${second} is equivalent to ${first}`,
      );
    });
  }

  test("other methods, verbs, literals or wildcards do not conflict", () => {
    routerOf(["GET /v1/{a}", "POST /v1/{a}", "* /v1/{a}", "GET /v1/{a}:go", "GET /v1/x", "GET /v1/**", "GET /v1/{a}/**"]);
  });
});

describe("Router: malformed request paths", () => {
  const router = routerOf(["GET /v1/{s}", "GET /v1/{name=files/**}"]);
  for (const path of ["/v1/%zz", "/v1/%", "/v1/a%2", "/v1/%E2%82", "/v1/%FF", "/v1/x:%zz", "/v1/files/a%2/b", "/nowhere/%zz"]) {
    test(`${path} is InvalidArgument`, () => {
      assert.throws(
        () => router.match("GET", path),
        (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument && /malformed percent-encoding/.test(e.rawMessage),
      );
    });
  }
});

describe("Router: many routes", () => {
  test("10,000 routes still match correctly", () => {
    const router = new Router<number>();
    const count = 10_000;
    for (let i = 0; i < count; i += 2) {
      router.add("GET", parsePathTemplate(`/v1/svc${i}/items/{id}`), i);
      router.add("POST", parsePathTemplate(`/v1/{name=svc${i}/*}:act${i % 7}`), i + 1);
    }
    for (let i = 0; i < count; i += 2) {
      const get = router.match("GET", `/v1/svc${i}/items/it${i}`);
      assert.deepEqual(get, { kind: "found", value: i, variables: [[["id"], `it${i}`]] });
      const post = router.match("POST", `/v1/svc${i}/x:act${i % 7}`);
      assert.deepEqual(post, { kind: "found", value: i + 1, variables: [[["name"], `svc${i}/x`]] });
    }
    assert.deepEqual(router.match("POST", "/v1/svc2/x:act0"), { kind: "not-found" });
    assert.deepEqual(router.match("GET", `/v1/svc${count}/items/x`), { kind: "not-found" });
    assert.deepEqual(router.match("PUT", "/v1/svc4/items/x"), { kind: "method-not-allowed", allow: ["GET"] });
  });
});

describe("Router: properties", () => {
  /** How a test client percent-encodes; `slash` is how "/" inside a value arrives. */
  const encoders = [
    { name: "encodeURIComponent", encode: encodeURIComponent, slash: "%2F" },
    {
      name: "every byte, lower-case hex",
      encode: (s: string) => [...new TextEncoder().encode(s)].map((b) => `%${b.toString(16).padStart(2, "0")}`).join(""),
      slash: "%2f",
    },
  ];
  /** Template literals allow fewer characters than encodeURIComponent leaves alone. */
  const encodeLiteral = (s: string) =>
    encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

  /** Any text, with the characters that matter to paths made common. */
  const text = fc.string({
    unit: fc.oneof(fc.constantFrom("/", ":", "%", "*", "{", " ", "+", "~", "é", "😀"), fc.string({ unit: "grapheme", minLength: 1, maxLength: 1 })),
    minLength: 1,
    maxLength: 6,
  });
  /** A template segment other than "**" with the request value that fills it. */
  const segment = fc.oneof(
    text.map((value) => ({ kind: "literal" as const, value })),
    text.map((value) => ({ kind: "*" as const, value })),
  );
  const part = fc.oneof(
    segment,
    fc.array(segment, { minLength: 1, maxLength: 3 }).map((segments) => ({ kind: "variable" as const, segments })),
  );
  const scenario = fc.record({
    parts: fc.array(part, { minLength: 1, maxLength: 5 }),
    tail: fc.option(
      fc.record({
        captured: fc.boolean(),
        prefix: fc.array(segment, { maxLength: 2 }),
        values: fc.array(text, { maxLength: 3 }),
      }),
    ),
    verb: fc.option(text),
    encoder: fc.constantFrom(...encoders),
  });

  test("for a random template and a path built to match it, the variables reproduce the values", () => {
    fc.assert(
      fc.property(scenario, ({ parts, tail, verb, encoder }) => {
        const templateSegment = (s: { kind: "literal" | "*"; value: string }) =>
          s.kind === "literal" ? encodeLiteral(s.value) : "*";
        const templateParts: string[] = [];
        const pathParts: string[] = [];
        const expected: Record<string, string> = {};
        /** Multi-segment values keep "/" encoded exactly as it arrived. */
        const multi = (values: readonly string[]) => values.map((v) => v.replaceAll("/", encoder.slash)).join("/");
        for (const [i, p] of parts.entries()) {
          const segments = p.kind === "variable" ? p.segments : [p];
          pathParts.push(...segments.map((s) => encoder.encode(s.value)));
          if (p.kind !== "variable") {
            templateParts.push(templateSegment(p));
            continue;
          }
          templateParts.push(`{v${i}=${segments.map(templateSegment).join("/")}}`);
          expected[`v${i}`] = segments.length === 1 ? segments[0].value : multi(segments.map((s) => s.value));
        }
        if (tail !== null) {
          const inner = [...tail.prefix.map(templateSegment), "**"].join("/");
          templateParts.push(tail.captured ? `{t=${inner}}` : inner);
          const values = [...tail.prefix.map((s) => s.value), ...tail.values];
          pathParts.push(...values.map(encoder.encode));
          if (tail.captured) expected.t = multi(values);
        }
        const verbSuffix = verb === null ? "" : `:${encodeLiteral(verb)}`;
        const template = `/${templateParts.join("/")}${verbSuffix}`;
        const path = `/${pathParts.join("/")}${verb === null ? "" : `:${encoder.encode(verb)}`}`;

        const router = new Router<string>();
        router.add("GET", parsePathTemplate(template), template);
        const match = router.match("GET", path);
        assert.deepEqual(outcome(match), [template, expected], `${template} ← ${path}`);
      }),
      { numRuns: 500 },
    );
  });
});
