import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { parsePathTemplate, PathTemplateError, type PathTemplate, type PathSegment } from "./path-template.ts";

const segmentText = (s: PathSegment): string => (s.kind === "literal" ? s.value : s.kind);

/** A parsed template in the notation of the tables: segments joined by "/", variables by field path. */
function describeTemplate(t: PathTemplate) {
  return {
    segments: t.segments.map(segmentText).join("/"),
    variables: Object.fromEntries(
      t.variables.map((v) => [v.fieldPath.join("."), t.segments.slice(v.start, v.end).map(segmentText).join("/")]),
    ),
    verb: t.verb,
  };
}

describe("parsePathTemplate: the examples of google/api/http.proto", () => {
  const table: Array<[template: string, segments: string, variables: Record<string, string>, verb?: string]> = [
    ["/v1/messages/{message_id}", "v1/messages/*", { message_id: "*" }],
    ["/v1/{name=messages/*}", "v1/messages/*", { name: "messages/*" }],
    ["/v1/users/{user_id}/messages/{message_id}", "v1/users/*/messages/*", { user_id: "*", message_id: "*" }],
    ["/v1/messages/{message_id}/{sub.subfield}", "v1/messages/*/*", { message_id: "*", "sub.subfield": "*" }],
    ["/v1/{name=shelves/*/books/*}", "v1/shelves/*/books/*", { name: "shelves/*/books/*" }],
    ["/v1/{book.name=shelves/*/books/*}", "v1/shelves/*/books/*", { "book.name": "shelves/*/books/*" }],
    ["/v1/{name=files/**}", "v1/files/**", { name: "files/**" }],
    ["/v1/messages/{message_id}:cancel", "v1/messages/*", { message_id: "*" }, "cancel"],
    ["/v1/{name=shelves/*}/books:watch", "v1/shelves/*/books", { name: "shelves/*" }, "watch"],
    ["/v1/{name=files/**}:download", "v1/files/**", { name: "files/**" }, "download"],
    ["/v1/messages", "v1/messages", {}],
    ["/v1/*/x/**", "v1/*/x/**", {}],
    ["/v1/{a=*}", "v1/*", { a: "*" }],
    ["/v1/{a=**}", "v1/**", { a: "**" }],
    ["/v1/{a=things}", "v1/things", { a: "things" }],
    ["/v1/{_x.y_2.z}", "v1/*", { "_x.y_2.z": "*" }],
    ["/", "", {}],
  ];
  for (const [template, segments, variables, verb] of table) {
    test(template, () => {
      const parsed = parsePathTemplate(template);
      assert.deepEqual(describeTemplate(parsed), { segments, variables, verb });
      assert.equal(parsed.source, template);
    });
  }

  test("literals and verbs are percent-decoded; sub-delims, '@', '=' and '~' are literal characters", () => {
    assert.deepEqual(describeTemplate(parsePathTemplate("/v1/a%20b/caf%C3%A9/x%2Fy/a=b@c~!$&'()+,;:do%21")), {
      segments: "v1/a b/café/x/y/a=b@c~!$&'()+,;",
      variables: {},
      verb: "do!",
    });
  });
});

describe("parsePathTemplate: malformed templates name what is wrong and where", () => {
  const table: Array<[template: string, reason: RegExp, offset: number]> = [
    ["v1/x", /must start with "\/"/, 0],
    ["", /must start with "\/"/, 0],
    ["/v1/{a", /"\{" at offset 4 is never closed/, 6],
    ["/v1/{a=x/*", /"\{" at offset 4 is never closed/, 10],
    ["/v1/{a={b}}", /variables must not nest/, 7],
    ["/v1/**/x", /"\*\*" must be the last segment/, 4],
    ["/v1/{a=**}/b", /"\*\*" must be the last segment/, 7],
    ["/v1/{a=**/b}", /"\*\*" must be the last segment/, 7],
    ["/v1/{a}/{a}", /field path "a" is bound more than once/, 9],
    ["/v1/{a.b}/x/{a.b=*}", /field path "a.b" is bound more than once/, 13],
    ["//", /empty segment/, 1],
    ["/v1//x", /empty segment/, 4],
    ["/v1/", /empty segment/, 4],
    ["/v1/{a=}", /empty segment/, 7],
    ["/v1/{a=x/}", /empty segment/, 9],
    ["/:x", /empty segment/, 1],
    ["/v1/{1a}", /"1a" is not a field name/, 5],
    ["/v1/{a-b}", /"a-b" is not a field name/, 5],
    ["/v1/{}", /expected a field name/, 5],
    ["/v1/{a.}", /expected a field name/, 7],
    ["/v1/{a/b}", /expected "=" or "\}" after the field path/, 6],
    ["/v1/x:", /empty verb/, 6],
    ["/v1/{a}:", /empty verb/, 8],
    ["/v1/x:y/z", /the verb must come last/, 7],
    ["/v1/x:a:b", /a verb may not contain ":"/, 7],
    ["/v1/x:a b", /unexpected " "; characters outside RFC 3986 pchar must be percent-encoded/, 7],
    ["/v1/{a=b:c}", /":" may only start the verb/, 8],
    ["/v1/a*", /"\*" must start a segment of its own/, 5],
    ["/v1/***", /"\*" must start a segment of its own/, 6],
    ["/v1/x{a}", /"\{" must start a segment of its own/, 5],
    ["/v1/{a}{b}", /"\{" must start a segment of its own/, 7],
    ["/v1/{a=b}c", /expected "\/", ":" or the end after a segment, found "c"/, 9],
    ["/v1/x}", /"\}" without a matching "\{"/, 5],
    ["/v1/a b", /unexpected " "; characters outside RFC 3986 pchar must be percent-encoded/, 5],
    ["/v1/%zz", /"%" must start an escape of two hex digits/, 4],
    ["/v1/a%2", /"%" must start an escape of two hex digits/, 5],
    ["/v1/%FF", /literal "%FF" is not valid percent-encoded UTF-8/, 4],
    ["/v1/x:%C3", /verb "%C3" is not valid percent-encoded UTF-8/, 6],
  ];
  for (const [template, reason, offset] of table) {
    test(`${JSON.stringify(template)} → ${reason.source.replaceAll("\\", "")}`, () => {
      assert.throws(
        () => parsePathTemplate(template),
        (e: unknown) =>
          e instanceof PathTemplateError &&
          reason.test(e.message) &&
          e.offset === offset &&
          e.message.endsWith(`(at offset ${offset})`) &&
          e.source === template,
      );
    });
  }
});

describe("parsePathTemplate: properties", () => {
  const templateCharacters = fc.constantFrom(..."/{}=*.:%_aZ09-~ é\u0000", "**", "%2F", "%zz", "{a}", "{b=");

  test("any input either parses into a consistent template or throws PathTemplateError", () => {
    const input = fc.oneof(fc.string({ unit: templateCharacters, maxLength: 30 }).map((s) => "/" + s), fc.string());
    fc.assert(
      fc.property(input, (source) => {
        let template: PathTemplate;
        try {
          template = parsePathTemplate(source);
        } catch (e) {
          if (e instanceof PathTemplateError && e.offset >= 0 && e.offset <= source.length) return;
          throw e;
        }
        assert.equal(template.source, source);
        const deep = template.segments.findIndex((s) => s.kind === "**");
        assert.ok(deep === -1 || deep === template.segments.length - 1, '"**" is last');
        const names = template.variables.map((v) => v.fieldPath.join("."));
        assert.equal(new Set(names).size, names.length, "field paths are unique");
        for (const v of template.variables) {
          assert.ok(0 <= v.start && v.start < v.end && v.end <= template.segments.length, "ranges are in bounds");
        }
        assert.ok(template.segments.every((s) => s.kind !== "literal" || s.value !== ""), "no empty literal");
      }),
      { numRuns: 2000 },
    );
  });
});
