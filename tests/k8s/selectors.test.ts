import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseFieldSelector, parseLabelSelector, SelectorError } from "./selectors.ts";

const labels = { app: "mirror", tier: "backend", "kubernetes.io/service-name": "mirror", version: "3" };

describe("label selectors, with the Kubernetes documentation's examples", () => {
  const cases: [selector: string, matches: boolean][] = [
    ["", true],
    ["app=mirror", true],
    ["app==mirror", true],
    ["app = mirror", true],
    ["app=other", false],
    ["app!=other", true],
    ["app!=mirror", false],
    ["missing!=x", true],
    ["kubernetes.io/service-name=mirror", true],
    ["app=mirror,tier=backend", true],
    ["app=mirror,tier=frontend", false],
    ["app in (mirror, other)", true],
    ["app in (other)", false],
    ["app notin (other,third)", true],
    ["app notin (mirror)", false],
    ["missing notin (x)", true],
    ["missing in (x)", false],
    ["tier", true],
    ["missing", false],
    ["!missing", true],
    ["!tier", false],
    ["version>2", true],
    ["version<3", false],
    ["app in (mirror),!missing,tier notin (frontend)", true],
    ["app=", false],
  ];
  for (const [selector, expected] of cases) {
    test(`"${selector}" ${expected ? "selects" : "does not select"} ${JSON.stringify(labels)}`, () => {
      assert.equal(parseLabelSelector(selector).matches(labels), expected);
    });
  }

  test("an empty value selects an empty label and objects without labels fail equality", () => {
    assert.equal(parseLabelSelector("app=").matches({ app: "" }), true);
    assert.equal(parseLabelSelector("app=x").matches(undefined), false);
    assert.equal(parseLabelSelector("app!=x").matches(undefined), true);
  });

  for (const invalid of ["app in mirror", "app in ()", "=x", "app=a=b", "a,", "app notin (x", "x>y", "bad key=x", "a=-x"]) {
    test(`"${invalid}" is refused`, () => {
      assert.throws(() => parseLabelSelector(invalid), SelectorError);
    });
  }
});

describe("field selectors", () => {
  const read = (object: unknown, field: string) => (object as Record<string, string>)[field];
  const object = { "metadata.name": "mirror", "metadata.namespace": "default" };
  const supported = ["metadata.name", "metadata.namespace"];

  test("equality, inequality and conjunction", () => {
    assert.equal(parseFieldSelector("metadata.name=mirror", read, supported).matches(object), true);
    assert.equal(parseFieldSelector("metadata.name==mirror", read, supported).matches(object), true);
    assert.equal(parseFieldSelector("metadata.name!=mirror", read, supported).matches(object), false);
    assert.equal(parseFieldSelector("metadata.name=mirror,metadata.namespace=kube-system", read, supported).matches(object), false);
    assert.equal(parseFieldSelector("", read, supported).matches(object), true);
  });

  test("an unsupported field is refused, as the API server does", () => {
    assert.throws(() => parseFieldSelector("spec.nodeName=x", read, supported), /field label not supported: spec.nodeName/);
    assert.throws(() => parseFieldSelector("metadata.name", read, supported), SelectorError);
  });
});
