// deploy/kubernetes without a cluster:
//   node check_kubernetes.mjs <deploy/kubernetes> <tools/node_modules> <the chain-gateway binary>
// - every object of each manifest is valid against the Kubernetes API schemas (kubernetes-models
//   from npm: the OpenAPI schemas of the API, checked with ajv);
// - the gateway's container runs as the image's numeric user, read-only, without privileges or
//   capabilities, with probes, resources and a writable /tmp, and its pod's grace period covers
//   the gateway's drain and shutdown;
// - the gateway configuration in each ConfigMap is valid (`chain-gateway --check-config`, with
//   the environment the manifests give it);
// - kustomization.yaml names files that exist.
// Exits 1 with what is wrong.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [dir, modules, binary] = process.argv.slice(2).map((p) => path.resolve(p));
const require = createRequire(path.join(modules, 'noop.js'));
const yaml = require('js-yaml');
const problems = [];
const check = (ok, what) => { if (!ok) problems.push(what); };

async function model(apiVersion, kind) {
  const file = path.join(modules, 'kubernetes-models', apiVersion, kind + '.js');
  if (!fs.existsSync(file)) return null;
  return (await import(pathToFileURL(file).href))[kind];
}

function checkGateway(where, pod, config) {
  const gateway = (pod.containers || []).find((c) => c.name === 'chain-gateway');
  check(gateway, `${where}: no chain-gateway container`);
  if (!gateway) return;
  const podSec = pod.securityContext || {};
  const sec = gateway.securityContext || {};
  check((sec.runAsNonRoot ?? podSec.runAsNonRoot) === true, `${where}: not runAsNonRoot`);
  check((sec.runAsUser ?? podSec.runAsUser) === 10001, `${where}: not the image's user 10001`);
  check(sec.allowPrivilegeEscalation === false, `${where}: privilege escalation allowed`);
  check(sec.readOnlyRootFilesystem === true, `${where}: root filesystem writable`);
  check((sec.capabilities?.drop || []).includes('ALL'), `${where}: capabilities not all dropped`);
  for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe'])
    check(gateway[probe], `${where}: no ${probe}`);
  check(gateway.livenessProbe?.httpGet?.path === '/healthz' ||
        (gateway.livenessProbe?.exec?.command || []).includes('--probe'),
        `${where}: liveness does not ask /healthz`);
  check(gateway.readinessProbe?.httpGet?.path === '/readyz', `${where}: readiness is not /readyz`);
  check(gateway.resources?.requests && gateway.resources?.limits?.memory,
        `${where}: no resource requests or memory limit`);
  const mounts = gateway.volumeMounts || [];
  check(mounts.some((m) => m.mountPath === '/tmp'), `${where}: no writable /tmp (SQLite's files)`);
  check(mounts.some((m) => m.mountPath === '/var/lib/chain-gateway'), `${where}: no journal volume`);
  const env = Object.fromEntries((gateway.env || []).map((e) => [e.name, e]));
  const file = env.GATEWAY_CONFIG?.value;
  check(file && mounts.some((m) => file.startsWith(m.mountPath + '/')),
        `${where}: GATEWAY_CONFIG is not in a mounted volume`);
  for (const e of gateway.env || [])
    check(e.value === undefined || !/token|key|secret|password/i.test(e.name),
          `${where}: ${e.name} written in the manifest, not from a Secret`);
  // The pod outlives the gateway's drain and shutdown.
  const server = config?.server || {};
  const needs = (server.drain_delay_ms || 0) + (server.shutdown_grace_ms ?? 10000);
  check((pod.terminationGracePeriodSeconds ?? 30) * 1000 > needs,
        `${where}: terminationGracePeriodSeconds does not cover drain_delay_ms + shutdown_grace_ms`);
}

for (const name of ['sidecar-example.yaml', 'service.yaml']) {
  const docs = yaml.loadAll(fs.readFileSync(path.join(dir, name), 'utf8')).filter(Boolean);
  check(docs.length > 0, `${name}: no objects`);
  let config = null;
  for (const doc of docs) {
    const where = `${name}: ${doc.kind}/${doc.metadata?.name}`;
    const Model = await model(doc.apiVersion, doc.kind);
    check(Model, `${where}: no schema for ${doc.apiVersion} ${doc.kind}`);
    if (Model) {
      try {
        new Model(doc).validate();
      } catch (e) {
        problems.push(`${where}: ${e.message}`);
      }
    }
    if (doc.kind === 'ConfigMap' && doc.data?.['gateway.yaml']) {
      config = yaml.load(doc.data['gateway.yaml']);
      const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'k8s-config-'));
      const file = path.join(tmp, 'gateway.yaml');
      fs.writeFileSync(file, doc.data['gateway.yaml']);
      try {
        execFileSync(binary, ['--check-config', file], {
          env: { ...process.env, UPSTREAM_URL: 'https://node.example.com/v2/key',
                 GATEWAY_ADMIN_TOKEN: 'a-token-from-the-secret-0123456789' },
          stdio: 'pipe' });
      } catch (e) {
        problems.push(`${where}: its gateway.yaml is not valid: ${e.stderr}`);
      }
      fs.rmSync(tmp, { recursive: true });
    }
  }
  for (const doc of docs) {
    const pod = doc.spec?.template?.spec;
    if (pod) checkGateway(`${name}: ${doc.kind}/${doc.metadata?.name}`, pod, config);
  }
}
const kustomization = yaml.load(fs.readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8'));
for (const r of kustomization.resources || [])
  check(fs.existsSync(path.join(dir, r)), `kustomization.yaml: ${r} does not exist`);

if (problems.length) {
  console.log(`check_kubernetes: ${problems.length} problem(s):`);
  for (const p of problems) console.log('  - ' + p);
  process.exit(1);
}
console.log('check_kubernetes: every object valid, the gateway contained and configured');
