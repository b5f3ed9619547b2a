/**
 * deploy/: what `kubectl kustomize` renders for the base and the demo overlay, checked as a
 * cluster would need it (every reference resolves, kustomize's hashed ConfigMap names included),
 * as least privilege and the restricted Pod Security Standard ask, and against grpc-edge's own
 * contract: the ConfigMap's config passes parseConfig, probes hit the admin port's /healthz and
 * /readyz, the public Service reaches only the REST port, and the termination grace period
 * covers preStop plus the config's drainTimeout. The Dockerfiles' ENTRYPOINT, CMD and USER must
 * fit the Deployment's args and security context.
 *
 * Then the demo overlay runs without a cluster: the gateway and the demo backend start from an
 * image-like layout (deploy/Dockerfile's runtime stage) with the rendered config and commands,
 * discovery watches a Kubernetes API stand-in that publishes the rendered Service's
 * EndpointSlice, and a REST call comes back from the backend.
 */
import assert from "node:assert/strict";
import { hostname } from "node:os";
import { spawnSync } from "node:child_process";
import {
  cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { parseAllDocuments, parseDocument } from "yaml";
import { parseConfig, type GatewayConfig } from "../../src/config/index.ts";
import { waitForStatus } from "../gateway/harness.ts";
import { endpointSlice, FakeApiServer } from "../k8s/fake-apiserver.ts";
import { startProcess, type RunningProcess } from "../support/process.ts";

const root = join(import.meta.dirname, "..", "..");
const kustomizations = ["deploy/base", "deploy/overlays/demo"] as const;
/** Seconds between the end of the drain and SIGKILL, for the runtime's own exit work. */
const minimumDrainMarginSeconds = 5;

// ---------------------------------------------------------------------------------------------
// The parts of Kubernetes objects these checks read

type Labels = Readonly<Record<string, string>>;

interface KubeObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly labels?: Labels };
}

interface ContainerPort {
  readonly name?: string;
  readonly containerPort: number;
}

type PortRef = string | number;

interface Probe {
  readonly httpGet?: { readonly path: string; readonly port: PortRef };
  readonly tcpSocket?: { readonly port: PortRef };
}

interface SecurityContext {
  readonly runAsNonRoot?: boolean;
  readonly runAsUser?: number;
  readonly runAsGroup?: number;
  readonly readOnlyRootFilesystem?: boolean;
  readonly allowPrivilegeEscalation?: boolean;
  readonly capabilities?: { readonly drop?: readonly string[]; readonly add?: readonly string[] };
  readonly seccompProfile?: { readonly type: string };
}

interface Container {
  readonly name: string;
  readonly image: string;
  readonly command?: readonly string[];
  readonly args?: readonly string[];
  readonly env?: readonly { readonly name: string; readonly value?: string }[];
  readonly ports?: readonly ContainerPort[];
  readonly livenessProbe?: Probe;
  readonly readinessProbe?: Probe;
  readonly startupProbe?: Probe;
  readonly lifecycle?: { readonly preStop?: { readonly sleep?: { readonly seconds: number } } };
  readonly resources?: {
    readonly requests?: Readonly<Record<string, string>>;
    readonly limits?: Readonly<Record<string, string>>;
  };
  readonly securityContext?: SecurityContext;
  readonly volumeMounts?: readonly { readonly name: string; readonly mountPath: string }[];
}

interface Volume {
  readonly name: string;
  readonly configMap?: { readonly name: string };
  readonly projected?: { readonly sources: readonly { readonly configMap?: { readonly name: string } }[] };
  readonly emptyDir?: object;
}

interface PodSpec {
  readonly serviceAccountName?: string;
  readonly automountServiceAccountToken?: boolean;
  readonly terminationGracePeriodSeconds?: number;
  readonly securityContext?: SecurityContext;
  readonly containers: readonly Container[];
  readonly volumes?: readonly Volume[];
}

interface Deployment extends KubeObject {
  readonly spec: {
    readonly replicas?: number;
    readonly selector: { readonly matchLabels: Labels };
    readonly template: { readonly metadata: { readonly labels: Labels }; readonly spec: PodSpec };
  };
}

interface Service extends KubeObject {
  readonly spec: {
    readonly type?: string;
    readonly selector: Labels;
    readonly ports: readonly { readonly name?: string; readonly port: number; readonly targetPort?: PortRef }[];
  };
}

interface ServiceAccount extends KubeObject {
  readonly automountServiceAccountToken?: boolean;
}

interface ConfigMap extends KubeObject {
  readonly data?: Readonly<Record<string, string>>;
}

interface PolicyRule {
  readonly apiGroups?: readonly string[];
  readonly resources?: readonly string[];
  readonly verbs: readonly string[];
  readonly nonResourceURLs?: readonly string[];
}

interface Role extends KubeObject {
  readonly rules: readonly PolicyRule[];
}

interface RoleBinding extends KubeObject {
  readonly roleRef: { readonly apiGroup: string; readonly kind: string; readonly name: string };
  readonly subjects: readonly { readonly kind: string; readonly name: string; readonly namespace?: string }[];
}

interface HorizontalPodAutoscaler extends KubeObject {
  readonly spec: {
    readonly scaleTargetRef: { readonly apiVersion: string; readonly kind: string; readonly name: string };
    readonly minReplicas?: number;
    readonly maxReplicas: number;
  };
}

interface PodDisruptionBudget extends KubeObject {
  readonly spec: { readonly selector: { readonly matchLabels: Labels } };
}

interface KindMap {
  Namespace: KubeObject;
  ServiceAccount: ServiceAccount;
  Role: Role;
  RoleBinding: RoleBinding;
  ConfigMap: ConfigMap;
  Deployment: Deployment;
  Service: Service;
  HorizontalPodAutoscaler: HorizontalPodAutoscaler;
  PodDisruptionBudget: PodDisruptionBudget;
}

// ---------------------------------------------------------------------------------------------
// Rendering and looking things up

class Manifests {
  readonly objects: readonly KubeObject[];
  constructor(objects: readonly KubeObject[]) {
    this.objects = objects;
  }

  ofKind<K extends keyof KindMap>(kind: K): KindMap[K][] {
    return this.objects.filter((o) => o.kind === kind) as KindMap[K][];
  }

  find<K extends keyof KindMap>(kind: K, name: string, namespace: string | undefined): KindMap[K] | undefined {
    return this.ofKind(kind).find((o) => o.metadata.name === name && o.metadata.namespace === namespace);
  }
}

/** `kubectl kustomize DIR`, parsed: one object per YAML document. */
function render(dir: string): Manifests {
  const run = spawnSync("kubectl", ["kustomize", join(root, dir)], { encoding: "utf8", timeout: 60_000 });
  assert.equal(run.error, undefined, `kubectl kustomize ${dir}: ${run.error?.message}`);
  assert.equal(run.status, 0, `kubectl kustomize ${dir} failed:\n${run.stderr}`);
  const documents = parseAllDocuments(run.stdout);
  assert.ok(Array.isArray(documents), `kubectl kustomize ${dir} rendered nothing`);
  return new Manifests(
    documents.map((doc, i) => {
      assert.deepEqual(doc.errors, [], `document ${i} of ${dir} is not valid YAML`);
      return doc.toJS() as KubeObject;
    }),
  );
}

const selects = (selector: Labels, labels: Labels) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

const podsSelectedBy = (m: Manifests, selector: Labels, namespace: string | undefined) =>
  m
    .ofKind("Deployment")
    .filter((d) => d.metadata.namespace === namespace && selects(selector, d.spec.template.metadata.labels));

/** A CPU quantity ("2", "1.5", "500m") in cores; NaN if it is none. */
function cpuCores(quantity: string): number {
  const match = /^(\d+(?:\.\d+)?)(m?)$/.exec(quantity);
  if (match === null) return Number.NaN;
  return Number(match[1]) / (match[2] === "m" ? 1000 : 1);
}

/** A probe's or Service's port: by name, or by number. */
function containerPort(container: Container, ref: PortRef): ContainerPort | undefined {
  return (container.ports ?? []).find((p) => (typeof ref === "string" ? p.name === ref : p.containerPort === ref));
}

function containersOf(m: Manifests): Array<{ deployment: Deployment; container: Container }> {
  return m.ofKind("Deployment").flatMap((deployment) =>
    deployment.spec.template.spec.containers.map((container) => ({ deployment, container })),
  );
}

/** The ConfigMap names a pod mounts, directly or through a projected volume. */
function configMapsOf(volume: Volume): string[] {
  const direct = volume.configMap === undefined ? [] : [volume.configMap.name];
  const projected = (volume.projected?.sources ?? []).flatMap((s) => (s.configMap === undefined ? [] : [s.configMap.name]));
  return [...direct, ...projected];
}

interface Gateway {
  readonly deployment: Deployment;
  readonly container: Container;
  /** `--config` as the container gets it. */
  readonly configPath: string;
  readonly configText: string;
  readonly config: GatewayConfig;
}

/** The Deployment whose container runs grpc-edge (`--config FILE`), and the config it reads. */
function gatewayOf(m: Manifests): Gateway {
  const candidates = containersOf(m).filter(({ container }) => container.args?.includes("--config"));
  assert.equal(candidates.length, 1, "exactly one container runs grpc-edge --config");
  const [{ deployment, container }] = candidates;
  const args = container.args!;
  const configPath = args[args.indexOf("--config") + 1];
  assert.ok(configPath?.startsWith("/"), `--config needs an absolute path, got ${configPath}`);
  const mount = (container.volumeMounts ?? []).find((v) => v.mountPath === dirname(configPath));
  assert.ok(mount, `nothing is mounted at ${dirname(configPath)}`);
  const volume = (deployment.spec.template.spec.volumes ?? []).find((v) => v.name === mount.name);
  assert.ok(volume, `volume ${mount.name} is not declared`);
  const texts = configMapsOf(volume)
    .map((name) => m.find("ConfigMap", name, deployment.metadata.namespace)?.data?.[basename(configPath)])
    .filter((text) => text !== undefined);
  assert.equal(texts.length, 1, `exactly one ConfigMap of volume ${volume.name} holds ${basename(configPath)}`);
  // parseConfig checks the file format only; descriptor files are read later, at start-up.
  const config = parseConfig(texts[0], { baseDir: dirname(configPath), fileName: configPath });
  return { deployment, container, configPath, configText: texts[0], config };
}

const demoBackendScript = "deploy/demo-backend.mjs";

/** The demo overlay's backend: the Deployment running the demo backend script, and the Service in front of it. */
function demoBackendOf(m: Manifests): { deployment: Deployment; container: Container; service: Service } {
  const runs = containersOf(m).filter(({ container }) => container.command?.includes(demoBackendScript));
  assert.equal(runs.length, 1, `exactly one Deployment runs ${demoBackendScript}`);
  const [{ deployment, container }] = runs;
  const { namespace } = deployment.metadata;
  const podLabels = deployment.spec.template.metadata.labels;
  const services = m
    .ofKind("Service")
    .filter((s) => s.metadata.namespace === namespace && selects(s.spec.selector, podLabels));
  assert.equal(services.length, 1, `exactly one Service selects ${deployment.metadata.name}`);
  return { deployment, container, service: services[0] };
}

// ---------------------------------------------------------------------------------------------
// The checks, for the base and the demo overlay alike

for (const dir of kustomizations) {
  describe(dir, () => {
    let m: Manifests;
    let gateway: Gateway;
    before(() => {
      m = render(dir);
      gateway = gatewayOf(m);
    });

    test("renders every kind the deployment needs, and no cluster-scoped RBAC", () => {
      const kinds = new Set(m.objects.map((o) => o.kind));
      const expected = ["Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment", "Service"];
      for (const kind of [...expected, "HorizontalPodAutoscaler", "PodDisruptionBudget"]) {
        assert.ok(kinds.has(kind), `no ${kind}`);
      }
      assert.ok(!kinds.has("ClusterRole") && !kinds.has("ClusterRoleBinding"));
    });

    test("every namespaced object is in the namespace the kustomization creates", () => {
      const [namespace] = m.ofKind("Namespace");
      assert.equal(m.ofKind("Namespace").length, 1);
      for (const o of m.objects.filter((o) => o.kind !== "Namespace")) {
        assert.equal(o.metadata.namespace, namespace.metadata.name, `${o.kind} ${o.metadata.name}`);
      }
    });

    test("the ConfigMap's grpc-edge config passes grpc-edge's own validation", () => {
      // gatewayOf ran parseConfig; what the cluster needs of the result:
      const { config, deployment } = gateway;
      assert.equal(config.listen.host, "0.0.0.0", "the public listener must take traffic from outside the pod");
      assert.equal(config.admin.host, "0.0.0.0", "kubelet probes the pod IP");
      assert.notEqual(config.listen.port, config.admin.port);
      assert.ok(config.upstreams.length > 0);
      // More worker processes than whole cores of the CPU limit only fight over the quota.
      const cpuLimit = cpuCores(gateway.container.resources?.limits?.cpu ?? "");
      assert.ok(config.workers <= Math.max(1, Math.floor(cpuLimit)), `workers ${config.workers}, CPU limit ${cpuLimit}`);
      // The generated (hashed) name is what the Deployment mounts, so a config change rolls the pods.
      const mounted = (deployment.spec.template.spec.volumes ?? []).flatMap(configMapsOf);
      assert.ok(mounted.some((name) => /^grpc-edge-config-[a-z0-9]{10}$/.test(name)), `mounted: ${mounted.join(", ")}`);
    });

    test("every reference resolves: service accounts, volumes, selectors, scale targets", () => {
      for (const d of m.ofKind("Deployment")) {
        const { namespace } = d.metadata;
        const pod = d.spec.template.spec;
        const what = `Deployment ${d.metadata.name}`;
        const ownPods = selects(d.spec.selector.matchLabels, d.spec.template.metadata.labels);
        assert.ok(ownPods, `${what}: selector misses its pods`);
        if (pod.serviceAccountName !== undefined) {
          const account = m.find("ServiceAccount", pod.serviceAccountName, namespace);
          assert.ok(account, `${what}: no ServiceAccount ${pod.serviceAccountName}`);
        }
        const volumes = new Set((pod.volumes ?? []).map((v) => v.name));
        for (const v of pod.volumes ?? []) {
          for (const name of configMapsOf(v)) {
            assert.ok(m.find("ConfigMap", name, namespace), `${what}: no ConfigMap ${name}`);
          }
        }
        for (const c of pod.containers) {
          for (const mount of c.volumeMounts ?? []) assert.ok(volumes.has(mount.name), `${c.name}: no volume ${mount.name}`);
          for (const probe of [c.livenessProbe, c.readinessProbe, c.startupProbe]) {
            const port = probe?.httpGet?.port ?? probe?.tcpSocket?.port;
            if (port !== undefined) assert.ok(containerPort(c, port), `${c.name}: a probe names port ${port}, it has none`);
          }
        }
      }
      for (const s of m.ofKind("Service")) {
        const targets = podsSelectedBy(m, s.spec.selector, s.metadata.namespace);
        assert.equal(targets.length, 1, `Service ${s.metadata.name} selects ${targets.length} Deployments`);
        for (const p of s.spec.ports) {
          const target = p.targetPort ?? p.port;
          assert.ok(
            targets[0].spec.template.spec.containers.some((c) => containerPort(c, target)),
            `Service ${s.metadata.name}: targetPort ${target} is no container port of ${targets[0].metadata.name}`,
          );
        }
      }
      for (const b of m.ofKind("PodDisruptionBudget")) {
        const guarded = podsSelectedBy(m, b.spec.selector.matchLabels, b.metadata.namespace);
        assert.deepEqual(guarded, [gateway.deployment], `PodDisruptionBudget ${b.metadata.name}`);
      }
      for (const h of m.ofKind("HorizontalPodAutoscaler")) {
        const target = { apiVersion: "apps/v1", kind: "Deployment", name: gateway.deployment.metadata.name };
        assert.deepEqual(h.spec.scaleTargetRef, target);
        assert.ok((h.spec.minReplicas ?? 1) >= 2 && h.spec.maxReplicas >= (h.spec.minReplicas ?? 1));
      }
      for (const b of m.ofKind("RoleBinding")) {
        assert.equal(b.roleRef.apiGroup, "rbac.authorization.k8s.io");
        assert.equal(b.roleRef.kind, "Role");
        const what = `RoleBinding ${b.metadata.name}`;
        assert.ok(m.find("Role", b.roleRef.name, b.metadata.namespace), `${what}: no Role ${b.roleRef.name}`);
        for (const s of b.subjects) {
          assert.equal(s.kind, "ServiceAccount");
          assert.ok(m.find("ServiceAccount", s.name, s.namespace), `${what}: no ServiceAccount ${s.namespace}/${s.name}`);
        }
      }
    });

    test("RBAC is least privilege: list and watch EndpointSlices, bound to the gateway only", () => {
      for (const role of m.ofKind("Role")) {
        for (const rule of role.rules) {
          assert.deepEqual(rule.apiGroups, ["discovery.k8s.io"]);
          assert.deepEqual(rule.resources, ["endpointslices"]);
          assert.equal(rule.nonResourceURLs, undefined);
          assert.ok(rule.verbs.every((v) => ["get", "list", "watch"].includes(v)), `verbs ${rule.verbs.join(", ")}`);
          assert.ok(rule.verbs.includes("list") && rule.verbs.includes("watch"), "discovery lists, then watches");
        }
      }
      const gatewayAccount = gateway.deployment.spec.template.spec.serviceAccountName;
      for (const b of m.ofKind("RoleBinding")) {
        assert.deepEqual(b.subjects.map((s) => s.name), [gatewayAccount]);
      }
    });

    test("only the gateway's pods get a service account token", () => {
      for (const d of m.ofKind("Deployment")) {
        const pod = d.spec.template.spec;
        const account = m.find("ServiceAccount", pod.serviceAccountName ?? "default", d.metadata.namespace);
        // The pod's setting wins; else the account's; Kubernetes' default is to mount.
        const mounted = pod.automountServiceAccountToken ?? account?.automountServiceAccountToken ?? true;
        assert.equal(mounted, d === gateway.deployment, `${d.metadata.name}: token mounted = ${mounted}`);
      }
    });

    test("the gateway runs 2+ replicas, probed on the admin port's /healthz and /readyz", () => {
      const { deployment, container, config } = gateway;
      assert.ok((deployment.spec.replicas ?? 1) >= 2);
      const admin = (probe: Probe | undefined, path: string) => {
        assert.equal(probe?.httpGet?.path, path);
        const port = containerPort(container, probe.httpGet.port)?.containerPort;
        assert.equal(port, config.admin.port, `${path} must be probed on the admin port`);
      };
      admin(container.livenessProbe, "/healthz");
      admin(container.readinessProbe, "/readyz");
      if (container.startupProbe !== undefined) admin(container.startupProbe, "/healthz");
      // No command: the image's entrypoint (Node or Deno) runs grpc-edge with these args.
      assert.equal(container.command, undefined);
    });

    test("the public Service reaches the REST port and never the admin port", () => {
      const { deployment, container, config } = gateway;
      const services = m.ofKind("Service").filter((s) => selects(s.spec.selector, deployment.spec.template.metadata.labels));
      assert.ok(services.length > 0, "no Service selects the gateway");
      for (const s of services) {
        assert.ok(["ClusterIP", "LoadBalancer", "NodePort"].includes(s.spec.type ?? "ClusterIP"));
        for (const p of s.spec.ports) {
          const target = containerPort(container, p.targetPort ?? p.port)?.containerPort;
          assert.equal(target, config.listen.port, `Service ${s.metadata.name} port ${p.port}`);
        }
      }
    });

    test("terminationGracePeriodSeconds covers the preStop sleep, the config's drainTimeout and a margin", () => {
      const { deployment, container, config } = gateway;
      const preStop = container.lifecycle?.preStop?.sleep?.seconds;
      // kubelet's own sleep: endpoint removal reaches kube-proxy and load balancers before SIGTERM.
      assert.ok(preStop !== undefined && preStop > 0, "no preStop sleep");
      const grace = deployment.spec.template.spec.terminationGracePeriodSeconds ?? 30;
      const drain = config.shutdown.drainTimeoutMs / 1000;
      const needed = preStop + drain + minimumDrainMarginSeconds;
      assert.ok(grace >= needed, `${grace} < ${preStop} + ${drain} + ${minimumDrainMarginSeconds}`);
    });

    test("every container has requests and limits and runs non-root, read-only, without privileges", () => {
      for (const { deployment, container } of containersOf(m)) {
        const pod = deployment.spec.template.spec.securityContext ?? {};
        const own = container.securityContext ?? {};
        const where = `${deployment.metadata.name}/${container.name}`;
        for (const kind of ["requests", "limits"] as const) {
          for (const resource of ["cpu", "memory"]) {
            assert.ok(container.resources?.[kind]?.[resource], `${where}: no ${kind}.${resource}`);
          }
        }
        assert.equal(own.runAsNonRoot ?? pod.runAsNonRoot, true, `${where}: runAsNonRoot`);
        assert.ok((own.runAsUser ?? pod.runAsUser ?? 0) > 0, `${where}: runAsUser must be a non-zero uid`);
        assert.equal((own.seccompProfile ?? pod.seccompProfile)?.type, "RuntimeDefault", `${where}: seccompProfile`);
        assert.equal(own.readOnlyRootFilesystem, true, `${where}: readOnlyRootFilesystem`);
        assert.equal(own.allowPrivilegeEscalation, false, `${where}: allowPrivilegeEscalation`);
        assert.ok(own.capabilities?.drop?.includes("ALL"), `${where}: drop ALL capabilities`);
        assert.equal(own.capabilities?.add, undefined, `${where}: adds capabilities`);
      }
    });

    test("kubernetes discovery looks where the gateway's account may list and watch EndpointSlices", () => {
      const account = gateway.deployment.spec.template.spec.serviceAccountName;
      const upstreams = gateway.config.upstreams.filter((u) => u.discovery.kind === "kubernetes");
      assert.ok(upstreams.length > 0);
      for (const u of upstreams) {
        if (u.discovery.kind !== "kubernetes") continue;
        const { namespace } = u.discovery;
        const allowed = m.ofKind("RoleBinding").some(
          (b) =>
            b.metadata.namespace === namespace &&
            b.subjects.some((s) => s.name === account && s.namespace === gateway.deployment.metadata.namespace) &&
            m.find("Role", b.roleRef.name, namespace)?.rules.some((r) => r.verbs.includes("watch")),
        );
        assert.ok(allowed, `upstream ${u.name}: no Role in ${namespace} lets ${account} watch EndpointSlices`);
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The demo overlay's own promises

describe("deploy/overlays/demo routes the library API to the Service it deploys", () => {
  let m: Manifests;
  let gateway: Gateway;
  before(() => {
    m = render("deploy/overlays/demo");
    gateway = gatewayOf(m);
  });

  test("demo.library.v1.Library goes over kubernetes discovery of the rendered library Service", () => {
    const upstream = gateway.config.upstreams.find((u) => u.services.includes("demo.library.v1.Library"));
    assert.ok(upstream, "no upstream serves demo.library.v1.Library");
    const discovery = upstream.discovery;
    assert.equal(discovery.kind, "kubernetes");
    if (discovery.kind !== "kubernetes") return;
    const { service, deployment: backend } = demoBackendOf(m);
    assert.deepEqual([service.metadata.namespace, service.metadata.name], [discovery.namespace, discovery.service]);
    // EndpointSlice ports carry the Service's port names; a number is the pods' port.
    const port = service.spec.ports.find((p) =>
      typeof discovery.port === "string" ? p.name === discovery.port : (p.targetPort ?? p.port) === discovery.port,
    );
    assert.ok(port, `Service ${service.metadata.name} has no port ${discovery.port}`);
    assert.ok((backend.spec.replicas ?? 1) >= 2, "one backend pod would hide the per-request balancing");
    assert.deepEqual(gateway.config.descriptors, ["/app/gen/demo.binpb"]);
  });

  test("the backend pods run the demo backend script with a drain that fits their grace period", () => {
    const { deployment: backend, container } = demoBackendOf(m);
    assert.deepEqual(container.command, ["node", demoBackendScript]); // run from the image's WORKDIR
    assert.ok(existsSync(join(root, demoBackendScript)));
    const drainMs = Number(container.env?.find((e) => e.name === "DEMO_BACKEND_DRAIN_MS")?.value);
    const preStop = container.lifecycle?.preStop?.sleep?.seconds ?? 0;
    const grace = backend.spec.template.spec.terminationGracePeriodSeconds ?? 30;
    assert.ok(drainMs > 0, "DEMO_BACKEND_DRAIN_MS");
    assert.ok(grace >= preStop + drainMs / 1000 + minimumDrainMarginSeconds, `${grace} s vs ${preStop} s + ${drainMs} ms`);
  });
});

// ---------------------------------------------------------------------------------------------
// The images (not built here: no container engine), as far as the manifests rely on them

/** A Dockerfile's last stage: what the image runs. */
const lastStage = (dockerfile: string) => dockerfile.slice(dockerfile.lastIndexOf("\nFROM "));

/** An instruction of the last stage: USER as written, ENTRYPOINT and CMD in their JSON form. */
function lastStageInstruction(dockerfile: string, instruction: "ENTRYPOINT" | "CMD" | "USER"): unknown {
  const line = new RegExp(`^${instruction} (.*)$`, "m").exec(lastStage(dockerfile));
  assert.ok(line, `no ${instruction} in the last stage`);
  return instruction === "USER" ? line[1] : JSON.parse(line[1]);
}

describe("deploy/Dockerfile and deploy/Dockerfile.deno run what the gateway Deployment expects", () => {
  const images = [
    { file: "deploy/Dockerfile", entrypoint: ["node", "bin/grpc-edge.js"] },
    { file: "deploy/Dockerfile.deno", entrypoint: ["deno", "task", "start"] },
  ];
  let gateway: Gateway;
  before(() => {
    gateway = gatewayOf(render("deploy/base"));
  });

  for (const image of images) {
    test(`${image.file}: entrypoint runs grpc-edge, CMD is the Deployment's args, user is the pod's`, () => {
      const dockerfile = readFileSync(join(root, image.file), "utf8");
      assert.deepEqual(lastStageInstruction(dockerfile, "ENTRYPOINT"), image.entrypoint);
      assert.deepEqual(lastStageInstruction(dockerfile, "CMD"), gateway.container.args);
      const pod = gateway.deployment.spec.template.spec.securityContext!;
      assert.equal(lastStageInstruction(dockerfile, "USER"), `${pod.runAsUser}:${pod.runAsGroup}`);
    });
  }

  test("what the entrypoints name exists: bin/grpc-edge.js and deno.json's start task", () => {
    assert.ok(existsSync(join(root, "bin/grpc-edge.js")));
    const deno = JSON.parse(readFileSync(join(root, "deno.json"), "utf8")) as { tasks?: Record<string, string> };
    assert.match(deno.tasks?.start ?? "", /\bsrc\/deno\.ts\b/);
  });
});

// ---------------------------------------------------------------------------------------------
// The demo overlay, run without a cluster

/** What deploy/Dockerfile's runtime stage puts in /app, besides production node_modules. */
const imageLayout = ["package.json", "bin", "dist", "gen/*.binpb", demoBackendScript] as const;
const imageRoot = "/app";

/** Lays out /app as deploy/Dockerfile does, in `dir`: tsc output, bin/, descriptor sets, the backend script. */
function buildImageLayout(dir: string): void {
  const tscArgs = ["-p", join(root, "tsconfig.build.json"), "--outDir", join(dir, "dist")];
  const tsc = spawnSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), ...tscArgs], {
    encoding: "utf8",
    timeout: 180_000,
  });
  // Type errors are the typecheck's business (and files other work is on may have some); the
  // emitted JavaScript is what this needs.
  const emitted = ["dist/src/node.js", "dist/src/demo/backends.js"].every((f) => existsSync(join(dir, f)));
  assert.ok(emitted, `tsc emitted no dist:\n${tsc.stdout}${tsc.stderr}`);
  cpSync(join(root, "package.json"), join(dir, "package.json"));
  cpSync(join(root, "bin"), join(dir, "bin"), { recursive: true });
  mkdirSync(join(dir, "gen"));
  for (const file of readdirSync(join(root, "gen")).filter((f) => f.endsWith(".binpb"))) {
    cpSync(join(root, "gen", file), join(dir, "gen", file));
  }
  mkdirSync(join(dir, "deploy"));
  cpSync(join(root, demoBackendScript), join(dir, demoBackendScript));
  symlinkSync(join(root, "node_modules"), join(dir, "node_modules"), "dir");
}

describe("the demo overlay, run from an image-like layout against a Kubernetes API stand-in", () => {
  let m: Manifests;
  let gateway: Gateway;
  let work: string;
  let api: FakeApiServer;
  const running: RunningProcess[] = [];

  before(async () => {
    m = render("deploy/overlays/demo");
    gateway = gatewayOf(m);
    work = mkdtempSync(join(tmpdir(), "grpc-edge-deploy-"));
    api = await FakeApiServer.start();
  });
  after(async () => {
    await Promise.all(running.map((p) => p.stop("SIGKILL")));
    await api?.stop();
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  test("deploy/Dockerfile's runtime stage copies the layout this test runs", () => {
    const dockerfile = readFileSync(join(root, "deploy/Dockerfile"), "utf8");
    const runtimeStage = lastStage(dockerfile);
    for (const path of [...imageLayout, "node_modules"]) {
      const destination = path.endsWith("*.binpb") ? `./${dirname(path)}/` : `./${path}`;
      const copy = new RegExp(`^COPY .* ${destination.replace(/[.*]/g, "\\$&")}$`, "m");
      assert.match(runtimeStage, copy, `the runtime stage does not copy ${path}`);
    }
    assert.match(runtimeStage, new RegExp(`^WORKDIR ${imageRoot}$`, "m"));
  });

  test("a REST call reaches a demo backend through the rendered config, Service and commands", async () => {
    const app = join(work, "app");
    mkdirSync(app);
    buildImageLayout(app);

    // The backend, as the library Deployment runs it, on loopback instead of the pod's interface.
    const { service, container: backendContainer } = demoBackendOf(m);
    const [command, script] = backendContainer.command!;
    assert.equal(command, "node");
    const backendEnv = Object.fromEntries((backendContainer.env ?? []).map((e) => [e.name, e.value ?? ""]));
    const backend = await startProcess(process.execPath, [join(app, script)], {
      cwd: app,
      env: { ...process.env, ...backendEnv, DEMO_BACKEND_LISTEN: "127.0.0.1:0" },
      ready: /listening on 127\.0\.0\.1:(\d+)\n/,
    });
    running.push(backend);

    // What the EndpointSlice controller would publish for the rendered Service and one ready pod.
    const grpcPort = service.spec.ports[0];
    api.applySlice(
      endpointSlice({
        namespace: service.metadata.namespace,
        service: service.metadata.name,
        name: `${service.metadata.name}-demo1`,
        ports: [{ name: grpcPort.name, port: Number(backend.match[1]) }],
        endpoints: [{ ip: "127.0.0.1", ready: true, pod: "library-0" }],
      }),
    );

    // The rendered config, with the image's /app where this layout is; loopback listeners.
    const doc = parseDocument(gateway.configText);
    const descriptors = (doc.toJS() as { descriptors: string[] }).descriptors;
    const inLayout = (d: string) => (d.startsWith(`${imageRoot}/`) ? join(app, d.slice(imageRoot.length)) : d);
    doc.set("descriptors", descriptors.map(inLayout));
    const configDir = join(work, dirname(gateway.configPath));
    mkdirSync(configDir, { recursive: true });
    const configFile = join(configDir, basename(gateway.configPath));
    writeFileSync(configFile, doc.toString());
    const kubeconfig = await api.writeKubeconfig(work, service.metadata.namespace);
    const { KUBERNETES_SERVICE_HOST: _host, KUBERNETES_SERVICE_PORT: _port, ...outsideCluster } = process.env;
    const args = gateway.container.args!.map((a) => (a === gateway.configPath ? configFile : a));
    const loopback = ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"];
    const gw = await startProcess(process.execPath, [join(app, "bin/grpc-edge.js"), ...args, ...loopback], {
      cwd: app,
      env: { ...outsideCluster, KUBECONFIG: kubeconfig },
      ready: /listening on (http:\/\/\S+) \(admin (http:\/\/\S+)\)/,
    });
    running.push(gw);
    const [, url, admin] = gw.match;

    await waitForStatus(`${admin}/readyz`, 200, 15_000);
    const answer = await fetch(`${url}/v1/shelves/1/books/1`, { signal: AbortSignal.timeout(10_000) });
    const book = (await answer.json()) as { title?: string; servedBy?: string };
    assert.equal(answer.status, 200, JSON.stringify(book));
    assert.equal(book.title, "Pride and Prejudice");
    assert.equal(book.servedBy, hostname(), "the pod reports its own name");

    // Both drain on SIGTERM and exit 0 (the gateway first: it holds the backend's connections).
    assert.equal(await gw.stop("SIGTERM"), 0, gw.output());
    assert.equal(await backend.stop("SIGTERM"), 0, backend.output());
    assert.match(backend.output(), /SIGTERM: draining/);
  });
});
