{{/*
Named templates of the chain-gateway chart. Each takes the chart's context: its own root `.`,
or, from a parent chart, `(index .Subcharts "chain-gateway")` (Helm 3.7+), so that the names
of the ConfigMap and Secrets agree between the objects this chart renders and the container a
parent puts into its pod. For that reason no name here depends on the calling chart's .Chart.

For a parent chart (mode: sidecar):
  chain-gateway.sidecar.container                      the container, a list item
  chain-gateway.sidecar.volumes                        its volumes, list items
  chain-gateway.sidecar.podAnnotations                 checksum/config, so a config change rolls the pod
  chain-gateway.sidecar.podSecurityContext             the pod securityContext the gateway expects
  chain-gateway.sidecar.terminationGracePeriodSeconds  at least this, for the gateway's drain
*/}}

{{- define "chain-gateway.name" -}}
{{- default "chain-gateway" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "chain-gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "chain-gateway.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "chain-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chain-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "chain-gateway.labels" -}}
{{ include "chain-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .Values.mode }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "chain-gateway.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The Secret holding the admin token, and its key. */}}
{{- define "chain-gateway.adminSecretName" -}}
{{- .Values.adminToken.existingSecret | default (include "chain-gateway.fullname" .) -}}
{{- end -}}

{{- define "chain-gateway.adminSecretKey" -}}
{{- if .Values.adminToken.existingSecret -}}{{ .Values.adminToken.key }}{{- else -}}admin-token{{- end -}}
{{- end -}}

{{/* "true" with the PostgreSQL journal, else "". */}}
{{- define "chain-gateway.postgres" -}}
{{- if eq .Values.store.backend "postgres" -}}true{{- end -}}
{{- end -}}

{{/* Service mode's replicas: the value, or by default one for SQLite, two for PostgreSQL (both
     take writes; one owns the journal and dispatches, the other stands by to take over). */}}
{{- define "chain-gateway.replicas" -}}
{{- if kindIs "invalid" .Values.replicas -}}
{{- if include "chain-gateway.postgres" . }}2{{ else }}1{{ end -}}
{{- else -}}
{{- .Values.replicas -}}
{{- end -}}
{{- end -}}

{{- define "chain-gateway.adminPortName" -}}
{{- if eq .Values.mode "sidecar" -}}gateway-admin{{- else -}}admin{{- end -}}
{{- end -}}

{{/*
The gateway's configuration and the Secret keys it reads, as YAML {config, refs, env}:
.Values.config with the chart's own settings added (refused when the values set them, rather than
silently replaced), and each urlSecret/keySecret turned into the url_file/key_file of its mounted
file (refs: Secret name -> its keys, for the projected volume; env: the EnvVars libpq reads).
*/}}
{{- define "chain-gateway.resolved" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- $own := include "chain-gateway.fullname" . -}}
{{- $refs := dict -}}
{{- $server := $cfg.server | default dict -}}
{{- range $key := list "listen" "admin_listen" -}}
{{- if hasKey $server $key -}}
{{- fail (printf "config.server.%s is the chart's to set (ports.rpc, ports.admin): remove it from the values" $key) -}}
{{- end -}}
{{- end -}}
{{- if eq .Values.mode "sidecar" -}}
{{- /* The application in the pod only: nothing outside the pod can send through the gateway. */ -}}
{{- $_ := set $server "listen" (printf "127.0.0.1:%v" .Values.ports.rpc) -}}
{{- else -}}
{{- $_ := set $server "listen" (printf "0.0.0.0:%v" .Values.ports.rpc) -}}
{{- end -}}
{{- /* The kubelet and Prometheus reach the pod's address (POD_IP, from the downward API; the
       config reader expands ${NAME}); so the admin API needs its token. */ -}}
{{- $_ := set $server "admin_listen" (printf "${POD_IP}:%v" .Values.ports.admin) -}}
{{- $_ := set $cfg "server" $server -}}
{{- $store := $cfg.store | default dict -}}
{{- if hasKey $store "path" -}}
{{- fail "config.store.path is the chart's to set (the journal's volume at /var/lib/chain-gateway): remove it from the values" -}}
{{- end -}}
{{- range $key := list "backend" "url" -}}
{{- if hasKey $store $key -}}
{{- fail (printf "config.store.%s is the chart's to set (store.backend, store.postgres.url): remove it from the values" $key) -}}
{{- end -}}
{{- end -}}
{{- $env := list -}}
{{- if include "chain-gateway.postgres" . -}}
{{- $pg := .Values.store.postgres -}}
{{- $_ := set $store "backend" "postgres" -}}
{{- $_ := set $store "url" (required "store.postgres.url: the database's postgresql:// URL (without the password) is required with store.backend postgres" $pg.url) -}}
{{- /* The password never goes into the ConfigMap (nor into the URL: values.schema.json refuses
       one there). libpq reads PGPASSWORD when the URL has none; the gateway takes no file for
       it, and libpq's own file (PGPASSFILE) is ignored unless only its owner may read it,
       which a Secret's file read through fsGroup is not. So this one secret is an environment
       variable, and a changed password needs a restart. */ -}}
{{- with $pg.passwordSecret -}}
{{- $env = append $env (dict "name" "PGPASSWORD" "valueFrom" (dict "secretKeyRef" (dict "name" (.name | default $own) "key" .key))) -}}
{{- if and (not .name) (not (hasKey $.Values.secretValues .key)) -}}
{{- fail (printf "store.postgres.passwordSecret reads key %q of the chart's Secret %s, and secretValues has no such key: add it to secretValues, or name an existing Secret (passwordSecret.name)" .key $own) -}}
{{- end -}}
{{- end -}}
{{- with $pg.sslRootCertSecret -}}
{{- $name := .name | default $own -}}
{{- $env = append $env (dict "name" "PGSSLROOTCERT" "value" (printf "/etc/chain-gateway/secrets/%s/%s" $name .key)) -}}
{{- $_ := set $refs $name (append (get $refs $name | default list) .key | uniq) -}}
{{- end -}}
{{- else -}}
{{- $_ := set $store "path" "/var/lib/chain-gateway/gateway.db" -}}
{{- end -}}
{{- $_ := set $cfg "store" $store -}}
{{- $auth := $cfg.auth | default dict -}}
{{- if hasKey $auth "admin" -}}
{{- fail "config.auth.admin is the chart's to set (from adminToken): remove it from the values" -}}
{{- end -}}
{{- $_ := set $auth "admin" (dict "token_file" "/etc/chain-gateway/secrets/admin-token") -}}
{{- $_ := set $cfg "auth" $auth -}}
{{- $log := $cfg.log | default dict -}}
{{- if and (hasKey $log "format") (ne (toString $log.format) "json") -}}
{{- fail "config.log.format: the chart logs JSON (one object a line, for the cluster's log collector)" -}}
{{- end -}}
{{- $_ := set $log "format" "json" -}}
{{- $_ := set $cfg "log" $log -}}
{{- range $chain := $cfg.chains | default list -}}
{{- range $u := $chain.upstreams | default list -}}
{{- if hasKey $u "urlSecret" -}}
{{- $where := printf "config.chains[%v].upstreams[%v]" $chain.name $u.id -}}
{{- if or (hasKey $u "url") (hasKey $u "url_file") -}}
{{- fail (printf "%s: takes one of url, url_file and urlSecret" $where) -}}
{{- end -}}
{{- $name := $u.urlSecret.name | default $own -}}
{{- $key := required (printf "%s.urlSecret.key: the Secret's key holding the URL" $where) $u.urlSecret.key -}}
{{- $_ := set $u "url_file" (printf "/etc/chain-gateway/secrets/%s/%s" $name $key) -}}
{{- $_ := set $refs $name (append (get $refs $name | default list) $key | uniq) -}}
{{- $_ := unset $u "urlSecret" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $holders := list -}}
{{- range $i, $c := $auth.clients | default list -}}
{{- $holders = append $holders (dict "item" $c "where" (printf "config.auth.clients[%v]" $i)) -}}
{{- end -}}
{{- range $i, $s := $cfg.signers | default list -}}
{{- $holders = append $holders (dict "item" $s "where" (printf "config.signers[%v]" $i)) -}}
{{- end -}}
{{- range $h := $holders -}}
{{- $c := $h.item -}}
{{- if hasKey $c "keySecret" -}}
{{- if or (hasKey $c "key_file") (hasKey $c "key_env") -}}
{{- fail (printf "%s: takes one of key_file, key_env and keySecret" $h.where) -}}
{{- end -}}
{{- $name := $c.keySecret.name | default $own -}}
{{- $key := required (printf "%s.keySecret.key: the Secret's key holding the key" $h.where) $c.keySecret.key -}}
{{- $_ := set $c "key_file" (printf "/etc/chain-gateway/secrets/%s/%s" $name $key) -}}
{{- $_ := set $refs $name (append (get $refs $name | default list) $key | uniq) -}}
{{- $_ := unset $c "keySecret" -}}
{{- end -}}
{{- end -}}
{{- range $key := get $refs $own | default list -}}
{{- if not (hasKey $.Values.secretValues $key) -}}
{{- fail (printf "the config reads key %q of the chart's Secret %s, and secretValues has no such key: add it to secretValues, or name an existing Secret in the reference (urlSecret.name, keySecret.name)" $key $own) -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "config" $cfg "refs" $refs "env" $env) -}}
{{- end -}}

{{- define "chain-gateway.configmap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "chain-gateway.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "chain-gateway.labels" . | nindent 4 }}
data:
  gateway.yaml: |
    {{- (include "chain-gateway.resolved" . | fromYaml).config | toYaml | nindent 4 }}
{{- end -}}

{{/* The drain and shutdown the pod must outlive: ms, from the gateway's settings and defaults. */}}
{{- define "chain-gateway.shutdownMs" -}}
{{- $server := (.Values.config | default dict).server | default dict -}}
{{- $drain := 0 -}}
{{- if hasKey $server "drain_delay_ms" -}}{{- $drain = $server.drain_delay_ms -}}{{- end -}}
{{- $grace := 10000 -}}
{{- if hasKey $server "shutdown_grace_ms" -}}{{- $grace = $server.shutdown_grace_ms -}}{{- end -}}
{{- add $drain $grace -}}
{{- end -}}

{{- define "chain-gateway.terminationGracePeriodSeconds" -}}
{{- $needs := include "chain-gateway.shutdownMs" . | int64 -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add (div (add $needs 999) 1000) 5 -}}
{{- else if le (mul .Values.terminationGracePeriodSeconds 1000 | int64) $needs -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed config.server.drain_delay_ms + shutdown_grace_ms (%v ms), or the kubelet kills the gateway while it drains" .Values.terminationGracePeriodSeconds $needs) -}}
{{- else -}}
{{- .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{- define "chain-gateway.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
# The journal's volume and the mounted secrets become the image user's group.
fsGroup: 10001
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "chain-gateway.podAnnotations" -}}
checksum/config: {{ include "chain-gateway.configmap" . | sha256sum }}
{{- end -}}

{{/*
The container. No preStop hook: the image has no `sleep`, and none is needed, as on SIGTERM the
gateway itself says 503 on /readyz and goes on serving for config.server.drain_delay_ms (what a
preStop sleep would buy), then finishes what is in flight within shutdown_grace_ms.
*/}}
{{- define "chain-gateway.container" -}}
{{- $admin := include "chain-gateway.adminPortName" . -}}
{{- $postgres := include "chain-gateway.postgres" . -}}
- name: chain-gateway
  image: {{ include "chain-gateway.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["--config", "/etc/chain-gateway/gateway.yaml"]
  env:
    - name: GATEWAY_CONFIG
      value: /etc/chain-gateway/gateway.yaml
    - name: POD_IP
      valueFrom:
        fieldRef: {fieldPath: status.podIP}
    {{- with (include "chain-gateway.resolved" . | fromYaml).env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    {{- if ne .Values.mode "sidecar" }}
    - {name: rpc, containerPort: {{ .Values.ports.rpc }}, protocol: TCP}
    {{- end }}
    - {name: {{ $admin }}, containerPort: {{ .Values.ports.admin }}, protocol: TCP}
  startupProbe:
    httpGet: {path: /healthz, port: {{ $admin }}}
    {{- toYaml .Values.probes.startup | nindent 4 }}
  livenessProbe:
    httpGet: {path: /healthz, port: {{ $admin }}}
    {{- toYaml .Values.probes.liveness | nindent 4 }}
  readinessProbe:
    {{- if $postgres }}
    # Ready while the journal takes writes: on the owner and on a standby alike (a standby
    # journals its writes and hands them to the owner), not while the database is unreachable.
    httpGet: {path: "/readyz?require=journal", port: {{ $admin }}}
    {{- else }}
    httpGet: {path: /readyz, port: {{ $admin }}}
    {{- end }}
    {{- toYaml .Values.probes.readiness | nindent 4 }}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    runAsGroup: 10001
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities: {drop: [ALL]}
    seccompProfile: {type: RuntimeDefault}
  volumeMounts:
    - {name: {{ include "chain-gateway.name" . }}-config, mountPath: /etc/chain-gateway, readOnly: true}
    {{- if not $postgres }}
    - {name: {{ include "chain-gateway.name" . }}-journal, mountPath: /var/lib/chain-gateway}
    {{- end }}
    # SQLite's temporary files.
    - {name: {{ include "chain-gateway.name" . }}-tmp, mountPath: /tmp}
{{- end -}}

{{/*
The pod of the service mode's workload (the StatefulSet's or the Deployment's template).
*/}}
{{- define "chain-gateway.podTemplate" -}}
metadata:
  labels:
    {{- include "chain-gateway.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- include "chain-gateway.podAnnotations" . | nindent 4 }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  terminationGracePeriodSeconds: {{ include "chain-gateway.terminationGracePeriodSeconds" . }}
  # The gateway does not talk to the Kubernetes API.
  automountServiceAccountToken: false
  securityContext:
    {{- include "chain-gateway.podSecurityContext" . | nindent 4 }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.affinity }}
  affinity:
    {{- toYaml .Values.affinity | nindent 4 }}
  {{- else if include "chain-gateway.postgres" . }}
  # The replicas on different nodes where the scheduler can: a node lost then leaves the others
  # serving, and a standby to take over when it held the owner.
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "chain-gateway.selectorLabels" . | nindent 16 }}
  {{- end }}
  containers:
    {{- include "chain-gateway.container" . | nindent 4 }}
  volumes:
    {{- include "chain-gateway.volumes" . | nindent 4 }}
{{- end -}}

{{/*
The volumes but the journal's claim in service mode (and no journal volume with PostgreSQL). One projected volume at /etc/chain-gateway
holds gateway.yaml and each secret under secrets/ (no mount nested in another, and the files
follow a changed ConfigMap or Secret, for a reload to pick up).
*/}}
{{- define "chain-gateway.volumes" -}}
{{- $refs := (include "chain-gateway.resolved" . | fromYaml).refs -}}
- name: {{ include "chain-gateway.name" . }}-config
  projected:
    {{- if eq .Values.mode "sidecar" }}
    # 0444: the parent's pod may not set fsGroup 10001; the volume is mounted in the gateway's
    # container only.
    defaultMode: 292
    {{- else }}
    # 0440, readable through fsGroup 10001.
    defaultMode: 288
    {{- end }}
    sources:
      - configMap:
          name: {{ include "chain-gateway.fullname" . }}
          items: [{key: gateway.yaml, path: gateway.yaml}]
      - secret:
          name: {{ include "chain-gateway.adminSecretName" . }}
          items: [{key: {{ include "chain-gateway.adminSecretKey" . | quote }}, path: secrets/admin-token}]
      {{- range $name, $keys := $refs }}
      - secret:
          name: {{ $name }}
          items:
            {{- range $key := $keys }}
            - {key: {{ $key | quote }}, path: {{ printf "secrets/%s/%s" $name $key | quote }}}
            {{- end }}
      {{- end }}
- name: {{ include "chain-gateway.name" . }}-tmp
  emptyDir: {medium: Memory, sizeLimit: {{ .Values.tmp.sizeLimit }}}
{{- if and (eq .Values.mode "sidecar") (not (include "chain-gateway.postgres" .)) }}
- name: {{ include "chain-gateway.name" . }}-journal
  {{- if .Values.sidecar.journalClaim }}
  persistentVolumeClaim: {claimName: {{ .Values.sidecar.journalClaim }}}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- end }}
{{- end -}}

{{- define "chain-gateway.requireSidecar" -}}
{{- if ne .Values.mode "sidecar" -}}
{{- fail "the chain-gateway.sidecar.* templates are for mode: sidecar (set chain-gateway.mode: sidecar in the parent's values)" -}}
{{- end -}}
{{- end -}}

{{- define "chain-gateway.sidecar.container" -}}
{{- include "chain-gateway.requireSidecar" . -}}
{{- include "chain-gateway.container" . -}}
{{- end -}}

{{- define "chain-gateway.sidecar.volumes" -}}
{{- include "chain-gateway.requireSidecar" . -}}
{{- include "chain-gateway.volumes" . -}}
{{- end -}}

{{- define "chain-gateway.sidecar.podAnnotations" -}}
{{- include "chain-gateway.requireSidecar" . -}}
{{- include "chain-gateway.podAnnotations" . -}}
{{- end -}}

{{- define "chain-gateway.sidecar.podSecurityContext" -}}
{{- include "chain-gateway.requireSidecar" . -}}
{{- include "chain-gateway.podSecurityContext" . -}}
{{- end -}}

{{- define "chain-gateway.sidecar.terminationGracePeriodSeconds" -}}
{{- include "chain-gateway.requireSidecar" . -}}
{{- include "chain-gateway.terminationGracePeriodSeconds" . -}}
{{- end -}}
