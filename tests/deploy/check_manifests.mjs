// Validates every manifest under deploy/kubernetes/ offline against the Kubernetes schemas
// (npm kubernetes-models), then checks what an operator relies on: containers run as non-root with
// a read-only root filesystem and no privilege escalation, with resource requests and limits, and
// recur-server has gRPC probes, a preStop and a termination grace longer than its drain.
// Usage: node check_manifests.mjs DIR
import fs from "node:fs";
import path from "node:path";
import yaml from "js-yaml";

const dir = process.argv[2];
const failures = [];
const fail = (where, what) => failures.push(`${where}: ${what}`);
const documents = [];

for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort()) {
  for (const doc of yaml.loadAll(fs.readFileSync(path.join(dir, file), "utf8"))) {
    if (doc == null) continue;
    const where = `${file}: ${doc.kind}/${doc.metadata?.name}`;
    let module;
    try {
      module = await import(`kubernetes-models/${doc.apiVersion}`);
    } catch (e) {
      fail(where, `unknown apiVersion ${doc.apiVersion}`);
      continue;
    }
    const Model = module[doc.kind];
    if (Model === undefined) {
      fail(where, `unknown kind ${doc.kind} in ${doc.apiVersion}`);
      continue;
    }
    try {
      new Model(doc).validate();
    } catch (e) {
      fail(where, `schema: ${e.message}`);
    }
    documents.push({ where, doc });
  }
}

const seconds = (duration) => {
  const m = /^(\d+)s$/.exec(duration);
  return m ? Number(m[1]) : NaN;
};

for (const { where, doc } of documents) {
  const pod = doc.spec?.template?.spec;
  if (pod === undefined) continue;
  if (pod.securityContext?.runAsNonRoot !== true) fail(where, "pod is not runAsNonRoot");
  for (const c of pod.containers) {
    const at = `${where} container ${c.name}`;
    const sc = c.securityContext ?? {};
    if (sc.readOnlyRootFilesystem !== true) fail(at, "root filesystem is writable");
    if (sc.allowPrivilegeEscalation !== false) fail(at, "privilege escalation allowed");
    if (sc.privileged === true) fail(at, "privileged");
    if (!c.resources?.requests || !c.resources?.limits) fail(at, "no resource requests and limits");
    if (c.name !== "recur-server") continue;
    if (!c.readinessProbe?.grpc || !c.livenessProbe?.grpc) fail(at, "probes are not gRPC health");
    if (!c.lifecycle?.preStop) fail(at, "no preStop");
    const drain = seconds(c.args[c.args.indexOf("--drain_timeout") + 1]);
    const preStop = Number(c.lifecycle?.preStop?.exec?.command?.at(-1) ?? 0);
    if (!(pod.terminationGracePeriodSeconds > drain + preStop)) {
      fail(at, `termination grace ${pod.terminationGracePeriodSeconds}s is not longer than the ` +
               `preStop ${preStop}s plus --drain_timeout ${drain}s`);
    }
  }
}

const kinds = documents.map(({ doc }) => doc.kind);
for (const needed of ["StatefulSet", "Deployment", "Service", "PodDisruptionBudget",
                      "PersistentVolumeClaim", "ConfigMap", "Job"]) {
  if (!kinds.includes(needed)) fail(dir, `no ${needed}`);
}
const job = documents.find(({ doc }) => doc.kind === "Job")?.doc;
if (job?.spec?.completionMode !== "Indexed") fail("Job", "not an Indexed Job");
const env = job?.spec?.template?.spec?.containers?.[0]?.env?.map((e) => e.name) ?? [];
for (const name of ["RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"]) {
  if (!env.includes(name)) fail("Job", `no ${name} in the environment`);
}

if (failures.length > 0) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log(`${documents.length} manifests valid`);
