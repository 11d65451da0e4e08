// What check_kubernetes.mjs (deploy/kubernetes) and check_chart.mjs (helm/chain-gateway) both
// check of a rendered object: its validity against the Kubernetes API schemas, the gateway's
// container and pod, and the gateway configuration with --check-config.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

/// A collector of problems: check(ok, what) keeps `what` when ok is falsy; report(name) prints
/// them and exits 1 if there are any.
export function problems() {
  const list = [];
  return {
    list,
    check: (ok, what) => { if (!ok) list.push(what); return Boolean(ok); },
    report(name, success) {
      if (list.length) {
        console.log(`${name}: ${list.length} problem(s):`);
        for (const p of list) console.log('  - ' + p);
        process.exit(1);
      }
      console.log(`${name}: ${success}`);
    },
  };
}

/// js-yaml from the pinned tools.
export function yamlFrom(modules) {
  return createRequire(path.join(modules, 'noop.js'))('js-yaml');
}

/// The kubernetes-models class of an apiVersion and kind, or null when it has none (CRDs such
/// as the Prometheus Operator's are not in the package).
export async function model(modules, apiVersion, kind) {
  const file = path.join(modules, 'kubernetes-models', apiVersion, kind + '.js');
  if (!fs.existsSync(file)) return null;
  return (await import(pathToFileURL(file).href))[kind];
}

/// Validates doc against its API schema; false (with the reason in `check`) when invalid or
/// when no schema is known.
export async function validateObject(modules, doc, where, check) {
  const Model = await model(modules, doc.apiVersion, doc.kind);
  if (!check(Model, `${where}: no schema for ${doc.apiVersion} ${doc.kind}`)) return false;
  try {
    new Model(doc).validate();
    return true;
  } catch (e) {
    return check(false, `${where}: ${e.message}`);
  }
}

/// The gateway's container in a pod spec: the image's numeric user, read-only, without
/// privileges or capabilities, with probes, resources and a writable /tmp, a volume for a SQLite
/// journal, its secrets not written in the manifest, and the pod's grace period covering the
/// gateway's drain and shutdown (`config`: the parsed gateway.yaml; `claims`: a StatefulSet's
/// volumeClaimTemplates' names, which mounts may name too). With the PostgreSQL journal, readiness
/// asks for the journal (ready while it takes writes, on the owner and on a standby alike).
/// Returns the container.
export function checkGateway(where, pod, config, check, claims = []) {
  const gateway = (pod.containers || []).find((c) => c.name === 'chain-gateway');
  if (!check(gateway, `${where}: no chain-gateway container`)) return null;
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
  const postgres = config?.store?.backend === 'postgres';
  const readiness = postgres ? '/readyz?require=journal' : '/readyz';
  check(gateway.readinessProbe?.httpGet?.path === readiness, `${where}: readiness is not ${readiness}`);
  check(gateway.resources?.requests && gateway.resources?.limits?.memory,
        `${where}: no resource requests or memory limit`);
  const mounts = gateway.volumeMounts || [];
  check(mounts.some((m) => m.mountPath === '/tmp'), `${where}: no writable /tmp (SQLite's files)`);
  if (!postgres)
    check(mounts.some((m) => m.mountPath === '/var/lib/chain-gateway'), `${where}: no journal volume`);
  for (const m of mounts)
    check((pod.volumes || []).some((v) => v.name === m.name) || claims.includes(m.name),
          `${where}: mount ${m.name} has no volume`);
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
  return gateway;
}

/// `chain-gateway --check-config file` with env added to this process's environment; null when
/// valid, else what the gateway said (its messages never show a secret).
export function checkConfig(binary, file, env) {
  try {
    execFileSync(binary, ['--check-config', file], { env: { ...process.env, ...env }, stdio: 'pipe' });
    return null;
  } catch (e) {
    return String(e.stderr || e.message).trim();
  }
}
