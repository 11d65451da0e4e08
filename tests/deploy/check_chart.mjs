// helm/chain-gateway without a cluster or a helm binary:
//   node check_chart.mjs <source dir> <tools/node_modules> <the chain-gateway binary> <helm-render>
// helm-render is tools/helm-render (Go's text/template and sprig, as Helm is built; its header
// lists all it supports). What the chart and its example use of Helm, and so what this test
// relies on: .Values (values.yaml deep-merged with -f files and checked against
// values.schema.json), .Release.Name/.Namespace/.Service, .Chart.Name/.Version/.AppVersion,
// .Files.Get, .Subcharts; Helm's include, required, fail, lookup (empty, as `helm template`),
// toYaml, fromYaml; sprig's deepCopy, dict, list, get, set, unset, hasKey, has, append, uniq,
// default, ternary, kindIs, toString, printf, trunc, trimSuffix, contains, replace, quote, nindent,
// sha256sum, randAlphaNum, b64enc, add, div, mul, int64; text/template's index, eq, ne, le, and,
// or, not.
// For each value file of tests/deploy/chart-values/ and helm/chain-gateway/examples/, and for the
// example parent chart (helm/chain-gateway/examples/wallet-backend, which includes the sidecar
// templates), as it is, with chart-values/wallet-backend/monitoring.yaml (its NetworkPolicy and
// PodMonitor on) and with chart-values/wallet-backend/postgres.yaml (its gateways on PostgreSQL):
// - every object is valid against the Kubernetes API schemas (kubernetes-models); the Prometheus
//   Operator's objects, which the package lacks, are checked against what they must select and
//   carry;
// - the gateway's container passes check_kubernetes.mjs's checks (kubernetes_checks.mjs), runs
//   with POD_IP from the downward API, mounts every secret it reads as a file from a projected
//   volume, and its pod carries the rendered ConfigMap's sha256 as checksum/config;
// - the rendered gateway.yaml passes `chain-gateway --check-config` in the file tree the pod
//   would have (the projected volume's files written to a temporary directory, with the chart's
//   Secrets' data or stand-ins for existing Secrets, paths moved there) and POD_IP set;
// - the service mode's Service, PodDisruptionBudget and NetworkPolicy select the workload's
//   pods and name its ports, the sidecar mode renders no workload and listens on loopback;
// - the service mode renders, with the SQLite journal, a StatefulSet of one replica with its
//   journal on a volumeClaimTemplate, and with the PostgreSQL journal (store.backend postgres) a
//   Deployment of `replicas` (default 2) and no StatefulSet or claim, ready while its journal
//   takes writes (/readyz?require=journal: the owner and the standbys alike), with a rolling
//   update that starts a new pod first (maxSurge) and stops no Ready pod before its replacement
//   is Ready (maxUnavailable 0), pods kept apart across nodes, and a PodDisruptionBudget that
//   lets a drain evict one replica at a time (maxUnavailable 1 by default) where SQLite's lets
//   none (0);
// - with the PostgreSQL journal in either mode (a sidecar too): the password as PGPASSWORD from
//   a secretKeyRef (the one secret in the environment, as libpq reads it there) and in no
//   ConfigMap, the CA as PGSSLROOTCERT naming a mounted file, no journal volume, and
//   gateway.yaml's store saying backend postgres and the values' URL, without a path;
// - no value of secretValues appears in plain text outside a Secret;
// - files/alerts.yaml and files/chain-gateway.json are deploy/'s, byte for byte, and the
//   PrometheusRule and dashboard ConfigMap carry them whole;
// - the checksum changes with the config and only with it; values.schema.json refuses bad
//   values (in helm-render, with gojsonschema as Helm 3, and in ajv's strict draft-07 mode);
//   missing or conflicting values fail rendering with a message that names them (a budget of
//   0 with PostgreSQL among them);
// - README.md names every value of values.yaml; NOTES.txt renders in both modes.
// Exits 1 with what is wrong.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { checkConfig, checkGateway, problems, validateObject, yamlFrom } from './kubernetes_checks.mjs';

const [source, modules, binary, renderer] = process.argv.slice(2).map((p) => path.resolve(p));
const chart = path.join(source, 'helm', 'chain-gateway');
const valuesDir = path.join(source, 'tests', 'deploy', 'chart-values');
const yaml = yamlFrom(modules);
const { check, report } = problems();
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'chart-check-'));
// The first well-known anvil/hardhat development key: a local signer's key_file stand-in.
const kDevKey = 'ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcb4d8ff8dd2a8f2ff80';

/// helm-render's output ({ok, out, err}); never throws.
function render(dir, files = [], extra = []) {
  try {
    const out = execFileSync(renderer, [...files.flatMap((f) => ['-f', f]), ...extra, dir],
                             { stdio: 'pipe', encoding: 'utf8' });
    return { ok: true, out };
  } catch (e) {
    return { ok: false, out: e.stdout || '', err: String(e.stderr || e.message) };
  }
}

/// The rendered documents, each with its text as rendered (for the checksum).
function documents(out) {
  return out.split(/^---\n/m).filter((t) => t.trim()).map((text) => {
    const body = text.replace(/^# Source: .*\n/, '');
    return { text: body.replace(/\n$/, ''), doc: yaml.load(body) };
  }).filter((d) => d.doc);
}

function valuesFile(name, text) {
  const file = path.join(tmpRoot, name);
  fs.writeFileSync(file, text);
  return file;
}

const matches = (selector, labels) =>
  Object.entries(selector || {}).every(([k, v]) => labels?.[k] === v) &&
  Object.keys(selector || {}).length > 0;

// --- The copies of deploy/'s files. -------------------------------------------------------------
for (const [copy, original] of [['files/alerts.yaml', 'deploy/prometheus/alerts.yaml'],
                                ['files/chain-gateway.json', 'deploy/grafana/chain-gateway.json']])
  check(fs.readFileSync(path.join(chart, copy)).equals(fs.readFileSync(path.join(source, original))),
        `helm/chain-gateway/${copy} differs from ${original}: copy it again`);
const alerts = yaml.load(fs.readFileSync(path.join(source, 'deploy/prometheus/alerts.yaml'), 'utf8'));
const dashboard = fs.readFileSync(path.join(source, 'deploy/grafana/chain-gateway.json'), 'utf8');

// --- Each case, rendered and checked. -------------------------------------------------------------
/// The file tree of the gateway's projected volume: the ConfigMap's gateway.yaml and each secret
/// item, from the rendered Secrets or, for an existing Secret, a stand-in of the kind the config
/// reads it as. Returns the directory standing for /etc/chain-gateway and the env of the pod.
function podFiles(where, gateway, pod, objects, config, dir) {
  const root = path.join(dir, 'etc', 'chain-gateway');
  const mount = (gateway.volumeMounts || []).find((m) => m.mountPath === '/etc/chain-gateway');
  const volume = (pod.volumes || []).find((v) => v.name === mount?.name);
  if (!check(volume?.projected, `${where}: /etc/chain-gateway is not a projected volume`)) return null;
  const secrets = Object.fromEntries(objects.filter((o) => o.kind === 'Secret')
    .map((o) => [o.metadata.name, o.data || {}]));
  const readers = new Map();   // path under /etc/chain-gateway -> what reads it
  const add = (file, kind) => file?.startsWith('/etc/chain-gateway/') &&
    readers.set(file.slice('/etc/chain-gateway/'.length), kind);
  add(config.auth?.admin?.token_file, 'token');
  // libpq's file of the database's CA, named in the environment.
  add((gateway.env || []).find((e) => e.name === 'PGSSLROOTCERT')?.value, 'cert');
  for (const c of config.auth?.clients || []) add(c.key_file, 'token');
  for (const s of config.signers || []) add(s.key_file, 'key');
  for (const chain of config.chains || [])
    for (const u of chain.upstreams || []) add(u.url_file, 'url');
  const provided = new Set();
  for (const src of volume.projected.sources || []) {
    const from = src.configMap || src.secret;
    for (const item of from?.items || []) {
      const file = path.join(root, item.path);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      provided.add(item.path);
      if (src.configMap) {
        const cm = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === from.name);
        check(cm?.data?.[item.key], `${where}: ConfigMap ${from.name} has no ${item.key}`);
        fs.writeFileSync(file, cm?.data?.[item.key] || '');
      } else if (secrets[from.name]) {
        const value = secrets[from.name][item.key];
        check(value, `${where}: Secret ${from.name} has no key ${item.key}`);
        fs.writeFileSync(file, Buffer.from(value || '', 'base64'));
      } else {
        // An existing Secret: what the operator would have put there.
        const kind = readers.get(item.path);
        check(kind, `${where}: ${item.path} of existing Secret ${from.name} is mounted, read by nothing`);
        fs.writeFileSync(file, kind === 'url' ? 'https://node.example.com/v2/a-key\n'
                             : kind === 'key' ? kDevKey + '\n'
                             : kind === 'cert' ? '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n'
                             : crypto.randomBytes(24).toString('hex'));
      }
    }
  }
  for (const p of readers.keys())
    check(provided.has(p), `${where}: the config reads /etc/chain-gateway/${p}, which no volume item provides`);
  check(provided.has('gateway.yaml'), `${where}: gateway.yaml is not in the config volume`);
  return root;
}

/// Percentages of an IntOrString as the Deployment controller resolves maxUnavailable (rounded
/// down) or maxSurge (up).
const resolve = (v, of, up) => typeof v === 'string' && v.endsWith('%')
  ? (up ? Math.ceil : Math.floor)(of * parseInt(v, 10) / 100) : v;

/// Checks one rendering; `expect`: {mode, workloadKind, values (the case's file)}. Returns the
/// checksum annotation and the objects.
async function checkRendering(name, out, expect) {
  const rendered = documents(out);
  const objects = rendered.map((r) => r.doc);
  check(objects.length > 0, `${name}: renders nothing`);
  for (const o of objects) {
    const where = `${name}: ${o.kind}/${o.metadata?.name}`;
    if (o.apiVersion === 'monitoring.coreos.com/v1') continue;   // below: no schema in the package
    await validateObject(modules, o, where, check);
  }
  const cmIndex = rendered.findIndex((r) => r.doc.kind === 'ConfigMap' && r.doc.data?.['gateway.yaml']);
  if (!check(cmIndex >= 0, `${name}: no ConfigMap with gateway.yaml`)) return null;
  const configText = rendered[cmIndex].doc.data['gateway.yaml'];
  const config = yaml.load(configText);
  const sidecar = expect.mode === 'sidecar';
  check(config.server?.listen === (sidecar ? '127.0.0.1:8545' : '0.0.0.0:8545'),
        `${name}: server.listen is ${config.server?.listen}`);
  check(config.server?.admin_listen === '${POD_IP}:9545', `${name}: admin_listen is not the pod's IP`);
  check(config.auth?.admin?.token_file === '/etc/chain-gateway/secrets/admin-token',
        `${name}: the admin token is not a mounted file`);
  check(config.log?.format === 'json', `${name}: the log is not JSON`);
  const values = expect.values || {};
  const postgres = values.store?.backend === 'postgres';
  for (const [key, value] of Object.entries(values.secretValues || {}))
    for (const r of rendered.filter((x) => x.doc.kind !== 'Secret'))
      check(!r.text.includes(String(value)),
            `${name}: ${r.doc.kind}/${r.doc.metadata?.name} holds secretValues.${key} in plain text`);

  const workloads = objects.filter((o) => o.spec?.template?.spec);
  check(workloads.length === (expect.workloadKind ? 1 : 0),
        `${name}: ${workloads.length} workloads, expected ${expect.workloadKind || 'none'}`);
  let checksum = null;
  for (const w of workloads) {
    const where = `${name}: ${w.kind}/${w.metadata.name}`;
    check(w.kind === expect.workloadKind, `${where}: expected a ${expect.workloadKind}`);
    const pod = w.spec.template.spec;
    const claims = (w.spec.volumeClaimTemplates || []).map((c) => c.metadata?.name);
    const gateway = checkGateway(where, pod, config, check, claims);
    if (!gateway) continue;
    const podIp = (gateway.env || []).find((e) => e.name === 'POD_IP');
    check(podIp?.valueFrom?.fieldRef?.fieldPath === 'status.podIP', `${where}: POD_IP is not the pod's IP`);
    // libpq reads the database's password from PGPASSWORD (the gateway takes no file for it):
    // the one secret allowed in the environment.
    check(!(gateway.env || []).some((e) => e.valueFrom?.secretKeyRef && !(postgres && e.name === 'PGPASSWORD')),
          `${where}: a secret in an environment variable (changes only with a restart): mount it`);
    check(pod.securityContext?.fsGroup === 10001, `${where}: no fsGroup 10001 (the journal's volume)`);
    checksum = w.spec.template.metadata?.annotations?.['checksum/config'];
    const sha = crypto.createHash('sha256').update(rendered[cmIndex].text).digest('hex');
    check(checksum === sha, `${where}: checksum/config is not the rendered ConfigMap's sha256`);
    check(!pod.containers.some((c) => c.lifecycle?.preStop?.exec?.command?.[0] === 'sleep'),
          `${where}: a preStop sleep, which the image does not have`);

    // The file tree the pod would have, and the gateway's own verdict on it.
    const dir = fs.mkdtempSync(path.join(tmpRoot, 'pod-'));
    const root = podFiles(where, gateway, pod, objects, config, dir);
    if (root) {
      const file = path.join(root, 'gateway.yaml');
      const moved = fs.readFileSync(file, 'utf8')
        .replaceAll('/etc/chain-gateway/', root + '/')
        .replaceAll('/var/lib/chain-gateway/', path.join(dir, 'journal') + '/');
      fs.writeFileSync(file, moved);
      const env = { POD_IP: '10.1.2.3' };
      for (const e of gateway.env || [])
        if (e.value !== undefined) env[e.name] = e.value.replaceAll('/etc/chain-gateway/', root + '/');
      const error = checkConfig(binary, file, env);
      check(!error, `${where}: the rendered gateway.yaml is not valid: ${error}`);
    }

    const labels = w.spec.template.metadata.labels;
    const pdb = objects.find((o) => o.kind === 'PodDisruptionBudget');
    if (w.kind === 'StatefulSet') {
      check(!postgres, `${where}: a StatefulSet with the PostgreSQL journal`);
      check(w.spec.replicas === 1, `${where}: ${w.spec.replicas} replicas`);
      const journal = gateway.volumeMounts.find((m) => m.mountPath === '/var/lib/chain-gateway');
      check(claims.includes(journal?.name), `${where}: the journal is not on a volumeClaimTemplate`);
      // The journal moves with the pod: a voluntary eviction waits for an operator.
      const budget = values.podDisruptionBudget?.maxUnavailable ?? 0;
      if (pdb)
        check(pdb.spec.maxUnavailable === budget && pdb.spec.minAvailable === undefined,
              `${name}: the PodDisruptionBudget is ${JSON.stringify(pdb.spec)}, not maxUnavailable ${budget}`);
    } else if (!sidecar && check(postgres && w.kind === 'Deployment',
                                 `${where}: the service mode's ${w.kind} without the PostgreSQL journal`)) {
      const replicas = values.replicas ?? 2;
      check(w.spec.replicas === replicas, `${where}: ${w.spec.replicas} replicas, expected ${replicas}`);
      check(!w.spec.volumeClaimTemplates && !(pod.volumes || []).some((v) => v.persistentVolumeClaim) &&
            !objects.some((o) => ['StatefulSet', 'PersistentVolumeClaim'].includes(o.kind)),
            `${where}: a StatefulSet or a volume claim with the PostgreSQL journal`);
      // Every replica is Ready (a standby takes writes): a rollout keeps them all available,
      // starting a new pod first and stopping an old one only once the new one is Ready.
      const rolling = w.spec.strategy?.rollingUpdate;
      check(w.spec.strategy?.type === 'RollingUpdate' && resolve(rolling?.maxSurge, replicas, true) >= 1,
            `${where}: a rollout that does not start a new pod before stopping an old one`);
      check(resolve(rolling?.maxUnavailable ?? '25%', replicas, false) === 0,
            `${where}: maxUnavailable ${rolling?.maxUnavailable} stops Ready replicas before their replacements are Ready`);
      if (!values.affinity) {
        const apart = pod.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution || [];
        check(apart.some((a) => a.podAffinityTerm?.topologyKey === 'kubernetes.io/hostname' &&
                                matches(a.podAffinityTerm?.labelSelector?.matchLabels, labels)),
              `${where}: its pods are not kept apart across nodes (preferred anti-affinity)`);
      }
      // Every replica is Ready and any may go: a drain evicts them one at a time (by default),
      // never none (it would wait for ever) and never all at once.
      if (pdb) {
        const budget = values.podDisruptionBudget?.maxUnavailable ?? 1;
        const allowed = resolve(pdb.spec.maxUnavailable, replicas, true);
        check(pdb.spec.minAvailable === undefined && pdb.spec.maxUnavailable === budget,
              `${name}: the PodDisruptionBudget is ${JSON.stringify(pdb.spec)}, not maxUnavailable ${budget}`);
        check(allowed >= 1, `${name}: the PodDisruptionBudget lets no replica be evicted: a drain never finishes`);
        check(replicas < 2 || allowed < replicas,
              `${name}: the PodDisruptionBudget lets every replica be evicted at once`);
      }
    }
    if (postgres) {
      // Either mode (a sidecar's gateway on the shared database too).
      check(!(gateway.volumeMounts || []).some((m) => m.mountPath === '/var/lib/chain-gateway') &&
            !(pod.volumes || []).some((v) => v.name.endsWith('-journal')),
            `${where}: a journal volume with the PostgreSQL journal`);
      const pg = values.store?.postgres || {};
      check(config.store?.backend === 'postgres' && config.store?.url === pg.url && !('path' in config.store),
            `${name}: gateway.yaml's store is ${JSON.stringify(config.store)}, not backend postgres with ${pg.url}`);
      check(!/^postgres(ql)?:\/\/[^/?#@]*:[^/?#@]*@|[?&]password=/.test(config.store?.url || ''),
            `${name}: a password in the store's URL`);
      const password = (gateway.env || []).find((e) => e.name === 'PGPASSWORD');
      if (pg.passwordSecret?.key) {
        const ref = password?.valueFrom?.secretKeyRef;
        const secretName = pg.passwordSecret.name || rendered[cmIndex].doc.metadata.name;
        check(ref?.name === secretName && ref?.key === pg.passwordSecret.key && password.value === undefined,
              `${where}: PGPASSWORD is not secretKeyRef ${secretName}/${pg.passwordSecret.key}: ${JSON.stringify(password)}`);
        const own = objects.find((o) => o.kind === 'Secret' && o.metadata.name === secretName);
        if (own) check(own.data?.[pg.passwordSecret.key], `${where}: Secret ${secretName} has no key ${pg.passwordSecret.key}`);
      } else {
        check(!password, `${where}: PGPASSWORD without store.postgres.passwordSecret`);
      }
      const ca = (gateway.env || []).find((e) => e.name === 'PGSSLROOTCERT');
      if (pg.sslRootCertSecret?.key) {
        const secretName = pg.sslRootCertSecret.name || rendered[cmIndex].doc.metadata.name;
        check(ca?.value === `/etc/chain-gateway/secrets/${secretName}/${pg.sslRootCertSecret.key}`,
              `${where}: PGSSLROOTCERT is ${ca?.value}, not the mounted ${secretName}/${pg.sslRootCertSecret.key}`);
      } else {
        check(!ca, `${where}: PGSSLROOTCERT without store.postgres.sslRootCertSecret`);
      }
    }
    if (!sidecar) {
      check(matches(w.spec.selector.matchLabels, labels), `${where}: its selector misses its pods`);
      const ports = (gateway.ports || []).map((p) => p.name);
      const service = objects.find((o) => o.kind === 'Service');
      check(service && matches(service.spec.selector, labels), `${name}: no Service selecting the pods`);
      for (const p of service?.spec.ports || [])
        check(ports.includes(p.targetPort), `${name}: Service port ${p.name} targets ${p.targetPort}, not a container port`);
      check(pdb && matches(pdb.spec.selector.matchLabels, labels), `${name}: no PodDisruptionBudget for the pods`);
      check(objects.some((o) => o.kind === 'NetworkPolicy'), `${name}: no NetworkPolicy`);
    }
  }
  for (const policy of objects.filter((o) => o.kind === 'NetworkPolicy')) {
    const where = `${name}: NetworkPolicy/${policy.metadata.name}`;
    check(Object.keys(policy.spec.podSelector?.matchLabels || {}).length, `${where}: selects every pod`);
    for (const w of workloads)
      check(matches(policy.spec.podSelector.matchLabels, w.spec.template.metadata.labels),
            `${where}: misses the gateway's pods`);
    const rules = policy.spec.ingress || [];
    const admin = rules.find((r) => r.ports?.some((p) => p.port === 9545));
    check(admin?.from?.length && admin.from.every((f) =>
            f.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'] === 'monitoring'),
          `${where}: the admin port is open to more than the monitoring namespace`);
    // A sidecar's RPC port is loopback: no rule for it; a service's admits its clients.
    check(rules.some((r) => r.ports?.some((p) => p.port === 8545)) === !sidecar,
          `${where}: the RPC port is ${sidecar ? 'admitted (loopback only)' : 'not admitted'}`);
  }
  if (sidecar && !expect.workloadKind)
    check(!objects.some((o) => ['Service', 'StatefulSet', 'Deployment', 'PodDisruptionBudget'].includes(o.kind)),
          `${name}: the sidecar mode renders a workload or a Service`);

  // The Prometheus Operator's objects.
  for (const o of objects.filter((x) => x.apiVersion === 'monitoring.coreos.com/v1')) {
    const where = `${name}: ${o.kind}/${o.metadata?.name}`;
    if (o.kind === 'PrometheusRule') {
      check(JSON.stringify(o.spec) === JSON.stringify(alerts), `${where}: spec is not deploy/prometheus/alerts.yaml`);
      continue;
    }
    check(o.kind === (sidecar ? 'PodMonitor' : 'ServiceMonitor'), `${where}: unexpected kind`);
    const endpoints = o.spec?.endpoints || o.spec?.podMetricsEndpoints || [];
    check(endpoints.length === 1 && endpoints[0].path === '/metrics', `${where}: not one /metrics endpoint`);
    const token = endpoints[0]?.bearerTokenSecret;
    const secret = objects.find((s) => s.kind === 'Secret' && s.metadata.name === token?.name);
    check(token?.name && token?.key && (!secret || secret.data?.[token.key]),
          `${where}: its bearer token is not the admin token's Secret key`);
    if (o.kind === 'ServiceMonitor') {
      const service = objects.find((s) => s.kind === 'Service');
      check(matches(o.spec.selector?.matchLabels, service?.metadata.labels), `${where}: selects no Service`);
      check(service?.spec.ports.some((p) => p.name === endpoints[0]?.port), `${where}: no Service port ${endpoints[0]?.port}`);
    } else {
      const pods = workloads.map((w) => w.spec.template);
      for (const p of pods) {
        check(matches(o.spec.selector?.matchLabels, p.metadata.labels), `${where}: selects not the application's pods`);
        check(p.spec.containers.some((c) => (c.ports || []).some((x) => x.name === endpoints[0]?.port)),
              `${where}: the pods have no port ${endpoints[0]?.port}`);
      }
      check(Object.keys(o.spec.selector?.matchLabels || {}).length > 0, `${where}: selects every pod`);
    }
  }
  const board = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.labels?.grafana_dashboard === '1');
  if (board)
    check(board.data?.['chain-gateway.json'] === dashboard, `${name}: the dashboard ConfigMap is not deploy/grafana's`);
  return { checksum, objects };
}

const examples = path.join(chart, 'examples');
const yamlIn = (dir) => fs.readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort().map((f) => path.join(dir, f));
const cases = [...yamlIn(valuesDir), ...yamlIn(examples)];
check(cases.length >= 5, `${valuesDir}, ${examples}: fewer value files than expected`);
const results = {};
for (const file of cases) {
  const name = path.relative(chart, file).startsWith('examples') ? path.relative(chart, file) : path.basename(file);
  const values = yaml.load(fs.readFileSync(file, 'utf8')) || {};
  const mode = values.mode || 'service';
  const workloadKind = mode !== 'service' ? null : values.store?.backend === 'postgres' ? 'Deployment' : 'StatefulSet';
  const r = render(chart, [file]);
  if (!check(r.ok, `${name}: does not render: ${r.err}`)) continue;
  results[name] = await checkRendering(name, r.out, { mode, workloadKind, values });
}
for (const [name, kind] of [['service-default.yaml', 'StatefulSet'], ['examples/service-postgres.yaml', 'Deployment']])
  check(results[name]?.objects.some((o) => o.kind === kind), `${name}: no ${kind}`);
{
  // A budget of the values' with PostgreSQL: taken as it is, and checked as any other.
  const file = valuesFile('pdb.yaml', 'replicas: 4\npodDisruptionBudget: {enabled: true, maxUnavailable: 2}\n');
  const values = yaml.load(fs.readFileSync(path.join(examples, 'service-postgres.yaml'), 'utf8'));
  const r = render(chart, [path.join(examples, 'service-postgres.yaml'), file]);
  if (check(r.ok, `service-postgres.yaml + pdb.yaml: does not render: ${r.err}`))
    await checkRendering('service-postgres.yaml + pdb.yaml', r.out,
                         { mode: 'service', workloadKind: 'Deployment',
                           values: { ...values, replicas: 4, podDisruptionBudget: { maxUnavailable: 2 } } });
}
{
  // replicas left to the chart (null, as in values.yaml, removes the example's): two, both taking writes.
  const r = render(chart, [path.join(examples, 'service-postgres.yaml'), valuesFile('replicas.yaml', 'replicas: null\n')]);
  const deployment = r.ok ? documents(r.out).find((d) => d.doc.kind === 'Deployment') : null;
  check(deployment?.doc.spec.replicas === 2,
        `replicas null with PostgreSQL: ${deployment ? deployment.doc.spec.replicas + ' replicas' : r.err || 'no Deployment'}, not 2`);
}
const monitoring = Object.values(results).flatMap((r) => r?.objects || []);
for (const kind of ['ServiceMonitor', 'PodMonitor', 'PrometheusRule'])
  check(monitoring.some((o) => o.kind === kind), `no value file renders a ${kind}`);
check(monitoring.some((o) => o.metadata?.labels?.grafana_dashboard === '1'), 'no value file renders the dashboard');

const parent = path.join(chart, 'examples', 'wallet-backend');
for (const files of [[], [path.join(valuesDir, 'wallet-backend', 'monitoring.yaml')],
                     [path.join(valuesDir, 'wallet-backend', 'postgres.yaml')]]) {
  const name = ['examples/wallet-backend', ...files.map((f) => path.basename(f))].join(' + ');
  const r = render(parent, files);
  // The gateway's values as the case gives them (the parent's own are SQLite's).
  const values = files.length ? yaml.load(fs.readFileSync(files[0], 'utf8'))['chain-gateway'] : {};
  if (check(r.ok, `${name}: does not render: ${r.err}`)) {
    const result = await checkRendering(name, r.out, { mode: 'sidecar', workloadKind: 'Deployment', values });
    if (files.some((f) => f.endsWith('monitoring.yaml')))
      for (const kind of ['PodMonitor', 'NetworkPolicy'])
        check(result?.objects.some((o) => o.kind === kind), `${name}: no ${kind}`);
    if (values.store?.backend === 'postgres') {
      const config = yaml.load(result?.objects.find((o) => o.kind === 'ConfigMap' && o.data?.['gateway.yaml'])
        ?.data['gateway.yaml'] || '{}');
      check(config.store?.backend === 'postgres', `${name}: the sidecar's gateway.yaml is not on PostgreSQL`);
      check(!result?.objects.some((o) => ['Service', 'StatefulSet', 'PodDisruptionBudget'].includes(o.kind)),
            `${name}: the sidecar mode on PostgreSQL renders a workload or a Service of its own`);
    }
  }
}

// --- The checksum follows the config, and only it. -------------------------------------------------
const base = path.join(valuesDir, 'service-default.yaml');
const sum = (files) => {
  const r = render(chart, files);
  const sts = r.ok && documents(r.out).find((d) => d.doc.kind === 'StatefulSet');
  return sts?.doc.spec.template.metadata.annotations['checksum/config'];
};
const first = sum([base]);
check(first && first === sum([base]), 'checksum/config differs between two renderings of the same values (the generated token?)');
check(first !== sum([base, valuesFile('level.yaml', 'config: {log: {level: debug}}\n')]),
      'checksum/config does not change when the config does');
check(first === sum([base, valuesFile('res.yaml', 'resources: {requests: {cpu: 200m, memory: 128Mi}}\n')]),
      'checksum/config changes with a value that is not the config');

// --- Values refused, with a message naming them. ---------------------------------------------------
/// store: with backend postgres, the URL (YAML) and more keys of store.postgres (YAML by key), the
/// section whole (ajv below merges the values shallowly: it must refuse for this reason only).
function pgValues(url, keys = {}) {
  const all = { url, passwordSecret: '{}', sslRootCertSecret: '{}', ...keys };
  return `store: {backend: postgres, postgres: {${Object.entries(all).map(([k, v]) => `${k}: ${v}`).join(', ')}}}\n`;
}
const refusals = [
  ['mode: foo\n', /mode must be one of/],
  ['replicas: 2\n', /replicas/],
  ['replica: 1\n', /Additional property replica is not allowed/],
  ['adminToken: {existingSecret: 7}\n', /adminToken\.existingSecret/],
  ['config: {chains: [{name: m, chain_id: 1, upstreams: [{id: a, url: "http://x", urlSecret: {key: k}}]}]}\n',
   /upstreams/],
  ['ports: {rpc: 70000}\n', /ports\.rpc/],
  // The PostgreSQL journal: a URL required, without a password; no password inline; no SQLite
  // journal claim for a sidecar (it would be unused).
  [pgValues('""'), /store\.postgres\.url/],
  [pgValues('"postgresql://gateway:hunter2@db:5432/gateway"'), /store\.postgres\.url/],
  [pgValues('"postgres://gateway@db/gateway?sslmode=require&password=hunter2"'), /store\.postgres\.url/],
  [pgValues('"mysql://gateway@db/gateway"'), /store\.postgres\.url/],
  [pgValues('"postgresql://gateway@db/gateway"', { passwordSecret: '{name: pg}' }), /passwordSecret/],
  [pgValues('"postgresql://gateway@db/gateway"', { password: 'hunter2' }), /Additional property password is not allowed/],
  [pgValues('"postgresql://gateway@db/gateway"', { passwordSecret: '{key: p, value: hunter2}' }),
   /Additional property value is not allowed/],
  ['mode: sidecar\nsidecar: {journalClaim: wallet-journal}\n' + pgValues('"postgresql://gateway@db/gateway"'),
   /sidecar\.journalClaim/],
  ['store: {backend: mysql, postgres: {url: "", passwordSecret: {}, sslRootCertSecret: {}}}\n', /store\.backend/],
];
for (const [text, reason] of refusals) {
  const r = render(chart, [base, valuesFile('bad.yaml', text)]);
  check(!r.ok && /values don't meet the specifications of the schema/.test(r.err) && reason.test(r.err),
        `values.schema.json does not refuse ${JSON.stringify(text)} with ${reason}: ${r.ok ? 'rendered' : r.err}`);
}
const failures = [
  [[], /secretValues has no such key/],   // the defaults: the node's URL is the one value to give
  [[base, valuesFile('listen.yaml', 'config: {server: {listen: "0.0.0.0:1"}}\n')],
   /config\.server\.listen is the chart's to set/],
  [[base, valuesFile('grace.yaml', 'terminationGracePeriodSeconds: 10\n')],
   /terminationGracePeriodSeconds \(10\) must exceed .* \(15000 ms\)/],
  [[base, valuesFile('nokey.yaml', 'config: {chains: [{name: m, chain_id: 1, upstreams: [{id: a, urlSecret: {key: k}}]}]}\nsecretValues: {}\n')],
   /key "k" of the chart's Secret/],
  [[base, valuesFile('policy.yaml', 'mode: sidecar\nnetworkPolicy: {enabled: true}\n')],
   /set sidecar\.podSelector/],
  [[base, valuesFile('admin.yaml', 'config: {auth: {admin: {token_env: X}}}\n')], /config\.auth\.admin is the chart's/],
  [[base, valuesFile('backend.yaml', 'config: {store: {backend: postgres}}\n')], /config\.store\.backend is the chart's/],
  [[base, valuesFile('pgown.yaml', pgValues('"postgresql://gateway@db/gateway"', { passwordSecret: '{key: pg-password}' }))],
   /store\.postgres\.passwordSecret reads key "pg-password" of the chart's Secret/],
  // Every replica on PostgreSQL is Ready and any may go: a budget of none would hang every drain.
  [[base, valuesFile('pgpdb.yaml', pgValues('"postgresql://gateway@db/gateway"') + 'podDisruptionBudget: {enabled: true, maxUnavailable: 0}\n')],
   /podDisruptionBudget\.maxUnavailable 0 with store\.backend postgres/],
  [[base, valuesFile('pgpdb.yaml', pgValues('"postgresql://gateway@db/gateway"') + 'podDisruptionBudget: {enabled: true, maxUnavailable: "0%"}\n')],
   /podDisruptionBudget\.maxUnavailable 0 with store\.backend postgres/],
];
for (const [files, reason] of failures) {
  const r = render(chart, files);
  check(!r.ok && reason.test(r.err), `rendering does not fail with ${reason}: ${r.ok ? 'rendered' : r.err}`);
}
// A second validator on the schema: draft-07 in ajv's strict mode (unknown keywords, types), the
// defaults valid, and the refusals above refused by it too.
{
  const Ajv = createRequire(path.join(modules, 'noop.js'))('ajv');
  const strict = (m) => { throw new Error(m); };
  const schema = JSON.parse(fs.readFileSync(path.join(chart, 'values.schema.json'), 'utf8'));
  check(schema.$schema === 'http://json-schema.org/draft-07/schema#', 'values.schema.json is not draft-07');
  try {
    const ajv = new Ajv({ strictTypes: true, allowUnionTypes: true,
                          logger: { log() {}, warn: strict, error: strict } });
    const validate = ajv.compile(schema);
    const defaults = yaml.load(fs.readFileSync(path.join(chart, 'values.yaml'), 'utf8'));
    check(validate(defaults), `ajv refuses values.yaml: ${ajv.errorsText(validate.errors)}`);
    for (const [text] of refusals)
      check(!validate({ ...defaults, ...yaml.load(text) }), `ajv takes ${JSON.stringify(text)}`);
    const merge = (a, b) => (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b))
      ? Object.fromEntries([...new Set([...Object.keys(a), ...Object.keys(b)])]
        .map((k) => [k, k in b ? merge(a[k], b[k]) : a[k]]))
      : b;
    for (const file of cases)
      check(validate(merge(defaults, yaml.load(fs.readFileSync(file, 'utf8')) || {})),
            `ajv refuses ${path.basename(file)}: ${ajv.errorsText(validate.errors)}`);
  } catch (e) {
    check(false, `values.schema.json in ajv's strict mode: ${e.message}`);
  }
}
const wrongMode = render(parent, [valuesFile('parent.yaml', 'chain-gateway: {mode: service}\n')]);
check(!wrongMode.ok && /chain-gateway\.sidecar\.\* templates are for mode: sidecar/.test(wrongMode.err),
      `the sidecar templates do not refuse mode: service: ${wrongMode.err}`);

// --- README and NOTES. -------------------------------------------------------------------------------
const readme = fs.readFileSync(path.join(chart, 'README.md'), 'utf8');
const defaults = yaml.load(fs.readFileSync(path.join(chart, 'values.yaml'), 'utf8'));
// Leaves, and maps the chart passes through whole (config, resources, probes, selectors...).
const whole = new Set(['config', 'resources', 'probes', 'secretValues', 'podAnnotations', 'podLabels',
                       'nodeSelector', 'affinity', 'service.annotations', 'sidecar.podSelector',
                       'metrics.serviceMonitor.labels', 'metrics.prometheusRule.labels',
                       'metrics.dashboard.labels', 'metrics.dashboard.annotations',
                       'store.postgres.passwordSecret', 'store.postgres.sslRootCertSecret']);
const keys = [];
const walk = (v, prefix) => {
  if (v && typeof v === 'object' && !Array.isArray(v) && !whole.has(prefix))
    for (const [k, x] of Object.entries(v)) walk(x, prefix ? `${prefix}.${k}` : k);
  else keys.push(prefix);
};
walk(defaults, '');
for (const k of keys) check(readme.includes('`' + k + '`'), `helm/chain-gateway/README.md does not list the value ${k}`);
const sidecarPg = valuesFile('sidecar-pg.yaml', pgValues('"postgresql://gateway@db/gateway"'));
for (const [files, want] of [[[base], /svc:8545/], [[path.join(valuesDir, 'sidecar.yaml')], /chain-gateway\.sidecar\.container/],
                             [[path.join(examples, 'service-postgres.yaml')], /all take writes[^]*gateway_journal_standby is 0/],
                             [[path.join(valuesDir, 'sidecar.yaml'), sidecarPg], /takes its application's writes[^]*gateway_journal_standby is 0/]]) {
  const notes = render(chart, files, ['--notes']);
  check(notes.ok && want.test(notes.out), `NOTES.txt: ${notes.ok ? 'does not say ' + want : notes.err}`);
}

fs.rmSync(tmpRoot, { recursive: true });
report('check_chart', `${cases.length} value files and the parent example (three times) rendered, valid, contained and configured`);
