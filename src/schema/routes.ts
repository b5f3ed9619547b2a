/**
 * google.api.http rules → route specs, for the services an upstream serves.
 * Rules are read from the method options in the descriptors (the extension stays in the
 * options' unknown fields until `getExtension` decodes it).
 */
import { getExtension, hasExtension, type DescMethod, type FileRegistry } from "@bufbuild/protobuf";
import { http } from "../../gen/google/api/annotations_pb.ts";
import type { HttpRule } from "../../gen/google/api/http_pb.ts";
import { parsePathTemplate, type PathTemplate } from "../transcode/path-template.ts";

export interface RouteSpec {
  readonly method: DescMethod;
  /** Upper-case HTTP method, or "*" for a custom rule of kind "*". */
  readonly httpMethod: string;
  readonly template: PathTemplate;
  /** "*", a top-level field name, or undefined for no body. */
  readonly body: string | undefined;
  readonly responseBody: string | undefined;
  /** "GET /v1/things/{id}" — for start-up reports and the admin view. */
  readonly rule: string;
}

export interface RouteProblem {
  readonly method: string;
  readonly rule: string;
  readonly reason: string;
}

export interface RouteSpecs {
  readonly routes: RouteSpec[];
  readonly problems: RouteProblem[];
}

/** Every binding (additional_bindings flattened) of every method of `serviceNames`. */
export function routeSpecsFor(registry: FileRegistry, serviceNames: readonly string[]): RouteSpecs {
  const routes: RouteSpec[] = [];
  const problems: RouteProblem[] = [];
  for (const serviceName of serviceNames) {
    const service = registry.getService(serviceName);
    if (service === undefined) continue; // the caller reports unknown services against the config
    for (const method of service.methods) {
      const options = method.proto.options;
      if (options === undefined || !hasExtension(options, http)) continue;
      const top = getExtension(options, http);
      for (const [i, rule] of [top, ...top.additionalBindings].entries()) {
        const spec = specOf(method, rule, i > 0);
        if ("reason" in spec) problems.push(spec);
        else routes.push(spec);
      }
    }
  }
  return { routes, problems };
}

function specOf(method: DescMethod, rule: HttpRule, nested: boolean): RouteSpec | RouteProblem {
  const p = rule.pattern;
  let httpMethod: string;
  let path: string;
  switch (p.case) {
    case "get":
    case "put":
    case "post":
    case "delete":
    case "patch":
      httpMethod = p.case.toUpperCase();
      path = p.value;
      break;
    case "custom":
      httpMethod = p.value.kind === "*" ? "*" : p.value.kind.toUpperCase();
      path = p.value.path;
      break;
    default:
      return problem(method, "(none)", "the rule has no pattern (get/put/post/delete/patch/custom)");
  }
  const ruleText = `${httpMethod} ${path}`;
  if (nested && rule.additionalBindings.length > 0) {
    return problem(method, ruleText, "additional_bindings must not nest");
  }
  if (!/^[A-Z][A-Z0-9_-]*$|^\*$/.test(httpMethod)) {
    return problem(method, ruleText, `"${httpMethod}" is not an HTTP method`);
  }
  let template: PathTemplate;
  try {
    template = parsePathTemplate(path);
  } catch (e) {
    return problem(method, ruleText, (e as Error).message);
  }
  const body = rule.body === "" ? undefined : rule.body;
  return {
    method,
    httpMethod,
    template,
    body,
    responseBody: rule.responseBody === "" ? undefined : rule.responseBody,
    rule: ruleText,
  };
}

function problem(method: DescMethod, rule: string, reason: string): RouteProblem {
  return { method: `/${method.parent.typeName}/${method.name}`, rule, reason };
}
