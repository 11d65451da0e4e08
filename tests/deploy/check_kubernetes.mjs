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
// The checks of an object are kubernetes_checks.mjs's, shared with the Helm chart's test.
// Exits 1 with what is wrong.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkConfig, checkGateway, problems, validateObject, yamlFrom } from './kubernetes_checks.mjs';

const [dir, modules, binary] = process.argv.slice(2).map((p) => path.resolve(p));
const yaml = yamlFrom(modules);
const { check, report } = problems();

for (const name of ['sidecar-example.yaml', 'service.yaml']) {
  const docs = yaml.loadAll(fs.readFileSync(path.join(dir, name), 'utf8')).filter(Boolean);
  check(docs.length > 0, `${name}: no objects`);
  let config = null;
  for (const doc of docs) {
    const where = `${name}: ${doc.kind}/${doc.metadata?.name}`;
    await validateObject(modules, doc, where, check);
    if (doc.kind === 'ConfigMap' && doc.data?.['gateway.yaml']) {
      config = yaml.load(doc.data['gateway.yaml']);
      const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'k8s-config-'));
      const file = path.join(tmp, 'gateway.yaml');
      fs.writeFileSync(file, doc.data['gateway.yaml']);
      const error = checkConfig(binary, file, {
        UPSTREAM_URL: 'https://node.example.com/v2/key',
        GATEWAY_ADMIN_TOKEN: 'a-token-from-the-secret-0123456789' });
      check(!error, `${where}: its gateway.yaml is not valid: ${error}`);
      fs.rmSync(tmp, { recursive: true });
    }
  }
  for (const doc of docs) {
    const pod = doc.spec?.template?.spec;
    const claims = (doc.spec?.volumeClaimTemplates || []).map((c) => c.metadata?.name);
    if (pod) checkGateway(`${name}: ${doc.kind}/${doc.metadata?.name}`, pod, config, check, claims);
  }
}
const kustomization = yaml.load(fs.readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8'));
for (const r of kustomization.resources || [])
  check(fs.existsSync(path.join(dir, r)), `kustomization.yaml: ${r} does not exist`);

report('check_kubernetes', 'every object valid, the gateway contained and configured');
