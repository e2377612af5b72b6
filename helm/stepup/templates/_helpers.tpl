{{/*
Shared helpers. Every helper takes the chart's context (`.` inside this chart,
`.Subcharts.stepup` from an application chart that depends on stepup), so the
sidecar templates resolve the same names and values as the chart's own
resources.
*/}}

{{/* Chart name, overridable. */}}
{{- define "stepup.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart> unless the release name already contains it. */}}
{{- define "stepup.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart label value: name-version. */}}
{{- define "stepup.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select this release's stepup pods. */}}
{{- define "stepup.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stepup.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "stepup.labels" -}}
helm.sh/chart: {{ include "stepup.chart" . }}
{{ include "stepup.selectorLabels" . }}
app.kubernetes.io/version: {{ include "stepup.imageTag" . | trunc 63 | quote }}
app.kubernetes.io/component: decision-point
app.kubernetes.io/part-of: stepup
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Image tag: image.tag, else the chart's appVersion. */}}
{{- define "stepup.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Image reference; a digest wins over the tag. */}}
{{- define "stepup.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "stepup.imageTag" .) }}
{{- end }}
{{- end }}

{{/* ServiceAccount name. */}}
{{- define "stepup.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stepup.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the ConfigMap holding the policy files. */}}
{{- define "stepup.policiesConfigMapName" -}}
{{- if .Values.policies.existingConfigMap }}
{{- .Values.policies.existingConfigMap }}
{{- else }}
{{- printf "%s-policies" (include "stepup.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Name of the ConfigMap holding config.toml. */}}
{{- define "stepup.configConfigMapName" -}}
{{- printf "%s-config" (include "stepup.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The policy files this chart renders, as JSON (file name -> text):
policies.inline, or the chart's baseline (files/default-policies/) when it is
empty.
*/}}
{{- define "stepup.policyFiles" -}}
{{- $files := dict }}
{{- if .Values.policies.inline }}
{{- $files = .Values.policies.inline }}
{{- else }}
{{- range $path, $_ := .Files.Glob "files/default-policies/*.yaml" }}
{{- $_ := set $files (base $path) ($.Files.Get $path) }}
{{- end }}
{{- end }}
{{- toJson $files }}
{{- end }}

{{/* Where config.toml is mounted. */}}
{{- define "stepup.configPath" -}}
/etc/stepup/config/config.toml
{{- end }}

{{/*
Checksum of the config file (`config`); empty when there is none. stepup reads
its config file only at startup, so a change must restart the pods: the
`checksum/stepup-config` pod annotation carries this.
*/}}
{{- define "stepup.configChecksum" -}}
{{- with .Values.config }}
{{- . | sha256sum }}
{{- end }}
{{- end }}

{{/*
Checksum of the policy files this chart renders (policies.inline or the
baseline); empty with an existing ConfigMap, which the chart cannot see.
Only used when policies.rolloutOnChange is true: stepup reloads the mounted
policy directory live, so policy changes need no restart by default.
Computed from values, not rendered files, so it gives the same answer from an
application chart's context.
*/}}
{{- define "stepup.policiesChecksum" -}}
{{- if not .Values.policies.existingConfigMap }}
{{- include "stepup.policyFiles" . | sha256sum }}
{{- end }}
{{- end }}

{{/* Port number of a host:port listen address. */}}
{{- define "stepup.listenPort" -}}
{{- regexReplaceAll "^.*:" . "" }}
{{- end }}

{{/* "true" when a listen address is loopback only, else "". */}}
{{- define "stepup.isLoopback" -}}
{{- $host := regexReplaceAll ":[0-9]+$" . "" }}
{{- if or (hasPrefix "127." $host) (eq $host "localhost") (eq $host "[::1]") }}true{{ end }}
{{- end }}

{{/*
The probes' kind for this release's stepup container, `grpc` or `http`:
probes.type when explicit; for `auto`, `grpc` where the kubelet (which probes
the pod IP, in plaintext) can reach the gRPC port, i.e. standalone or a
sidecar on a non-loopback TCP address, without TLS; else `http` (the admin
port's /livez and /readyz), the only probe that works for a sidecar on
loopback or a Unix socket. stepup.validate refuses an explicit `grpc` that
cannot work.
*/}}
{{- define "stepup.probeType" -}}
{{- $v := .Values }}
{{- if ne $v.probes.type "auto" }}{{ $v.probes.type }}
{{- else if include "stepup.tlsSecretName" . }}http
{{- else if and (eq $v.mode "sidecar") (or $v.sidecar.unixSocket.enabled (include "stepup.isLoopback" $v.sidecar.listen)) }}http
{{- else }}grpc
{{- end }}
{{- end }}

{{/*
"true" when the admin listener must be reachable on the pod IP: metrics are
scraped (metrics.enabled) or the kubelet probes it (HTTP probes on a
container that has probes). Takes a dict: ctx, probes (bool).
*/}}
{{- define "stepup.adminExposed" -}}
{{- $v := .ctx.Values }}
{{- if and $v.admin.enabled (or $v.metrics.enabled (and .probes (eq (include "stepup.probeType" .ctx) "http"))) }}true{{ end }}
{{- end }}

{{/*
The `--admin` value: `off`, 0.0.0.0:<admin.port> when exposed, else
127.0.0.1:<admin.port> (stepup's own default, made explicit so the port is
the chart's). Takes a dict: ctx, probes (bool).
*/}}
{{- define "stepup.adminAddress" -}}
{{- $v := .ctx.Values }}
{{- if not $v.admin.enabled }}off
{{- else if include "stepup.adminExposed" . }}{{ printf "0.0.0.0:%d" (int $v.admin.port) }}
{{- else }}{{ printf "127.0.0.1:%d" (int $v.admin.port) }}
{{- end }}
{{- end }}

{{/*
The Secret the gRPC listener's certificate comes from: tls.secretName, or
`<fullname>-tls` for a cert-manager Certificate (standalone mode); empty when
gRPC is plaintext.
*/}}
{{- define "stepup.tlsSecretName" -}}
{{- $v := .Values }}
{{- if $v.tls.secretName }}{{ $v.tls.secretName }}
{{- else if and $v.tls.certManager.issuerRef (eq $v.mode "standalone") }}{{ printf "%s-tls" (include "stepup.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Where the client CA bundle is mounted when it has its own Secret or ConfigMap. */}}
{{- define "stepup.clientCAPath" -}}
/etc/stepup/client-ca
{{- end }}

{{/*
The `--tls-client-ca` file: the key of the client CA's own Secret or
ConfigMap, else of the TLS Secret.
*/}}
{{- define "stepup.clientCAFile" -}}
{{- $ca := .Values.tls.clientCA }}
{{- if or $ca.secretName $ca.configMapName }}{{ printf "%s/%s" (include "stepup.clientCAPath" .) $ca.key }}
{{- else }}{{ printf "%s/%s" (trimSuffix "/" .Values.tls.mountPath) $ca.key }}
{{- end }}
{{- end }}

{{/*
The sidecar's `--listen`: `unix:<dir>/<name>` with sidecar.unixSocket, else
sidecar.listen.
*/}}
{{- define "stepup.sidecarListen" -}}
{{- $s := .Values.sidecar }}
{{- if $s.unixSocket.enabled }}{{ printf "unix:%s/%s" (trimSuffix "/" $s.unixSocket.dir) $s.unixSocket.name }}
{{- else }}{{ $s.listen }}
{{- end }}
{{- end }}

{{/*
Refuse values that would render something that cannot work. Called from
templates/validate.yaml, so it runs for every install, upgrade and render.
*/}}
{{- define "stepup.validate" -}}
{{- $v := .Values }}
{{- include "stepup.validateSecrets" . }}
{{- if and $v.serviceMonitor.enabled (not $v.metrics.enabled) }}
{{- fail "serviceMonitor.enabled needs metrics.enabled: the ServiceMonitor scrapes the metrics port" }}
{{- end }}
{{- if and $v.podDisruptionBudget.enabled (not (kindIs "invalid" $v.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" $v.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both (set the other to null)" }}
{{- end }}
{{- if and $v.autoscaling.enabled (kindIs "invalid" $v.autoscaling.targetCPUUtilizationPercentage) (kindIs "invalid" $v.autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail "autoscaling: set targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" }}
{{- end }}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- fail "autoscaling: minReplicas must not exceed maxReplicas" }}
{{- end }}
{{- $tls := include "stepup.tlsSecretName" . }}
{{- $probed := or (eq $v.mode "standalone") $v.sidecar.probes }}
{{- $probeType := include "stepup.probeType" . }}
{{- if and $tls $probed (eq $probeType "grpc") }}
{{- fail "tls: the kubelet's gRPC probes cannot speak TLS; set probes.type=auto or http (probes on the admin port's /livez and /readyz)" }}
{{- end }}
{{- if and $v.tls.clientCA.enabled (not $tls) }}
{{- fail "tls.clientCA.enabled needs TLS: set tls.secretName, or tls.certManager.issuerRef in standalone mode" }}
{{- end }}
{{- if and $v.tls.clientCA.secretName $v.tls.clientCA.configMapName }}
{{- fail "tls.clientCA: set secretName or configMapName, not both" }}
{{- end }}
{{- if and $v.tls.certManager.issuerRef (ne $v.mode "standalone") }}
{{- fail "tls.certManager.issuerRef applies to mode=standalone (a Certificate for the Service's names); in sidecar mode set tls.secretName" }}
{{- end }}
{{- if and $v.tls.certManager.issuerRef (not $v.tls.certManager.issuerRef.name) }}
{{- fail "tls.certManager.issuerRef needs a name (and kind: Issuer or ClusterIssuer)" }}
{{- end }}
{{- if and $v.sidecar.unixSocket.enabled (ne $v.mode "sidecar") }}
{{- fail "sidecar.unixSocket applies to mode=sidecar: a standalone Deployment serves its Service over TCP" }}
{{- end }}
{{- if and (eq $v.mode "sidecar") $v.sidecar.unixSocket.enabled $v.sidecar.probes (eq $probeType "grpc") }}
{{- fail "sidecar.unixSocket: the kubelet's gRPC probes need a TCP port; set probes.type=auto or http (probes on the admin port) or set sidecar.probes=false" }}
{{- end }}
{{- if and (eq $v.mode "sidecar") $v.sidecar.probes (eq $probeType "grpc") (not $v.sidecar.unixSocket.enabled) (include "stepup.isLoopback" $v.sidecar.listen) }}
{{- fail (printf "sidecar.probes: the kubelet probes the pod IP, so gRPC probes on a sidecar listening on loopback (%s) cannot be probed; set probes.type=auto or http (probes on the admin port, the decision API stays on loopback), set sidecar.listen to 0.0.0.0:<port>, or set sidecar.probes=false" $v.sidecar.listen) }}
{{- end }}
{{- if and $v.metrics.enabled (not $v.admin.enabled) }}
{{- fail "metrics.enabled needs admin.enabled: /metrics is served by the admin listener" }}
{{- end }}
{{- if and $v.metrics.scrapeAnnotations (not $v.metrics.enabled) }}
{{- fail "metrics.scrapeAnnotations needs metrics.enabled: on loopback the admin port cannot be scraped" }}
{{- end }}
{{- if and $probed (eq $probeType "http") (not $v.admin.enabled) }}
{{- if eq $v.probes.type "http" }}
{{- fail "probes.type=http needs admin.enabled: the probes ask the admin listener's /livez and /readyz" }}
{{- else if eq $v.mode "sidecar" }}
{{- fail "sidecar.probes needs admin.enabled here: the kubelet cannot reach a sidecar's loopback, Unix-socket or TLS gRPC listener, so probes.type=auto probes the admin listener's /livez and /readyz; set admin.enabled=true, or set sidecar.probes=false (no probes: a native sidecar then no longer holds the application back until its policies are loaded)" }}
{{- else }}
{{- fail "tls with admin.enabled=false leaves nothing to probe: the kubelet's gRPC probes cannot speak TLS, so probes.type=auto probes the admin listener's /livez and /readyz; set admin.enabled=true" }}
{{- end }}
{{- end }}
{{- $grpcPort := ternary (include "stepup.listenPort" $v.sidecar.listen) "7171" (eq $v.mode "sidecar") | int }}
{{- if and (eq $v.mode "sidecar") $v.sidecar.unixSocket.enabled }}{{- $grpcPort = 0 }}{{- end }}
{{- if and $v.admin.enabled (eq (int $v.admin.port) $grpcPort) }}
{{- fail (printf "admin.port %d is the gRPC port: pick another one" (int $v.admin.port)) }}
{{- end }}
{{- if hasPrefix "/" $v.decisionLog }}
{{- $writable := not $v.securityContext.readOnlyRootFilesystem }}
{{- range $v.extraVolumeMounts }}
{{- if and (hasPrefix (printf "%s/" (trimSuffix "/" .mountPath)) $v.decisionLog) (not .readOnly) }}
{{- $writable = true }}
{{- end }}
{{- end }}
{{- if not $writable }}
{{- fail (printf "decisionLog: %s is on the read-only root filesystem; mount a writable volume over its directory (extraVolumes + extraVolumeMounts, e.g. an emptyDir at %s)" $v.decisionLog (dir $v.decisionLog)) }}
{{- end }}
{{- end }}
{{- if eq $v.mode "sidecar" }}
{{- range $key := list "autoscaling" "podDisruptionBudget" "serviceMonitor" }}
{{- if (index $v $key).enabled }}
{{- fail (printf "%s.enabled applies to mode=standalone; in sidecar mode the application chart owns the pods" $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The stepup container, shared by the standalone Deployment and the sidecar.
Takes a dict: ctx (the chart context), listen (host:port), probes (bool),
native (bool: add restartPolicy Always for a native sidecar).
Renders one YAML list item.
*/}}
{{- define "stepup.container" -}}
{{- $ctx := .ctx }}
{{- $v := $ctx.Values }}
{{- $unix := hasPrefix "unix:" .listen }}
{{- $port := ternary 0 (include "stepup.listenPort" .listen | int) $unix }}
{{- $loopback := or $unix (include "stepup.isLoopback" .listen) }}
{{- $tls := include "stepup.tlsSecretName" $ctx }}
{{- $httpProbes := and .probes (eq (include "stepup.probeType" $ctx) "http") }}
{{- $adminExposed := include "stepup.adminExposed" (dict "ctx" $ctx "probes" .probes) -}}
- name: stepup
  image: {{ include "stepup.image" $ctx | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if .native }}
  restartPolicy: Always
  {{- end }}
  args:
    - serve
    - --policies
    - {{ $v.policies.mountPath | quote }}
    - --listen
    - {{ .listen | quote }}
    {{- if $unix }}
    - --listen-mode
    - {{ $v.sidecar.unixSocket.mode | quote }}
    {{- end }}
    {{- if $tls }}
    - --tls-cert
    - {{ printf "%s/tls.crt" (trimSuffix "/" $v.tls.mountPath) | quote }}
    - --tls-key
    - {{ printf "%s/tls.key" (trimSuffix "/" $v.tls.mountPath) | quote }}
    {{- if $v.tls.clientCA.enabled }}
    - --tls-client-ca
    - {{ include "stepup.clientCAFile" $ctx | quote }}
    {{- end }}
    {{- end }}
    {{- if $v.config }}
    - --config
    - {{ include "stepup.configPath" $ctx | quote }}
    {{- end }}
    - --admin
    - {{ include "stepup.adminAddress" (dict "ctx" $ctx "probes" .probes) | quote }}
    {{- with $v.decisionLog }}
    - --decision-log
    - {{ . | quote }}
    {{- end }}
    {{- range $v.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  env:
    - name: STEPUP_LOG_LEVEL
      value: {{ $v.log.level | quote }}
    - name: STEPUP_LOG_FORMAT
      value: {{ $v.log.format | quote }}
    {{- if not (kindIs "invalid" $v.cache.size) }}
    - name: STEPUP_CACHE_SIZE
      value: {{ $v.cache.size | int64 | toString | quote }}
    {{- end }}
    {{- if $v.cache.ttl }}
    - name: STEPUP_CACHE_TTL
      value: {{ $v.cache.ttl | quote }}
    {{- end }}
    {{- if not (kindIs "invalid" $v.limits.maxInFlight) }}
    - name: STEPUP_MAX_IN_FLIGHT
      value: {{ $v.limits.maxInFlight | int64 | toString | quote }}
    {{- end }}
    {{- if $v.limits.maxTimeSkew }}
    - name: STEPUP_MAX_TIME_SKEW
      value: {{ $v.limits.maxTimeSkew | quote }}
    {{- end }}
    {{- if not (kindIs "invalid" $v.workerThreads) }}
    - name: STEPUP_WORKER_THREADS
      value: {{ $v.workerThreads | int64 | toString | quote }}
    {{- end }}
    {{- with include "stepup.secretEnv" $ctx }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $v.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if or (not $loopback) $adminExposed }}
  ports:
    {{- if not $loopback }}
    - name: grpc
      containerPort: {{ $port }}
      protocol: TCP
    {{- end }}
    {{- if $adminExposed }}
    - name: admin
      containerPort: {{ $v.admin.port }}
      protocol: TCP
    {{- end }}
  {{- end }}
  {{- if .probes }}
  {{- /* grpc: grpc.health.v1 on the gRPC port ("" for liveness,
  stepup.v1.DecisionService for startup and readiness); http: /livez and
  /readyz on the admin port. */}}
  {{- range $probe, $path := dict "startup" "/readyz" "liveness" "/livez" "readiness" "/readyz" }}
  {{- with index $v.probes $probe }}
  {{- if .enabled }}
  {{ $probe }}Probe:
    {{- if $httpProbes }}
    httpGet:
      path: {{ $path }}
      port: admin
    {{- else }}
    grpc:
      port: {{ $port }}
      {{- if ne $probe "liveness" }}
      service: stepup.v1.DecisionService
      {{- end }}
    {{- end }}
    periodSeconds: {{ .periodSeconds }}
    timeoutSeconds: {{ .timeoutSeconds }}
    failureThreshold: {{ .failureThreshold }}
  {{- end }}
  {{- end }}
  {{- end }}
  {{- end }}
  {{- with $v.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
  volumeMounts:
    - name: stepup-policies
      mountPath: {{ $v.policies.mountPath }}
      readOnly: true
    {{- if $v.config }}
    - name: stepup-config
      mountPath: {{ dir (include "stepup.configPath" $ctx) }}
      readOnly: true
    {{- end }}
    {{- if $tls }}
    - name: stepup-tls
      mountPath: {{ $v.tls.mountPath }}
      readOnly: true
    {{- if and $v.tls.clientCA.enabled (or $v.tls.clientCA.secretName $v.tls.clientCA.configMapName) }}
    - name: stepup-client-ca
      mountPath: {{ include "stepup.clientCAPath" $ctx }}
      readOnly: true
    {{- end }}
    {{- end }}
    {{- if $unix }}
    - name: stepup-socket
      mountPath: {{ $v.sidecar.unixSocket.dir }}
    {{- end }}
    {{- with $v.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/* The pod volumes the stepup container mounts, as YAML list items. */}}
{{- define "stepup.volumes" -}}
- name: stepup-policies
  configMap:
    name: {{ include "stepup.policiesConfigMapName" . }}
{{- if .Values.config }}
- name: stepup-config
  configMap:
    name: {{ include "stepup.configConfigMapName" . }}
{{- end }}
{{- with include "stepup.tlsSecretName" . }}
- name: stepup-tls
  secret:
    secretName: {{ . }}
{{- end }}
{{- $ca := .Values.tls.clientCA }}
{{- if and (include "stepup.tlsSecretName" .) $ca.enabled }}
{{- if $ca.secretName }}
- name: stepup-client-ca
  secret:
    secretName: {{ $ca.secretName }}
{{- else if $ca.configMapName }}
- name: stepup-client-ca
  configMap:
    name: {{ $ca.configMapName }}
{{- end }}
{{- end }}
{{- if and (eq .Values.mode "sidecar") .Values.sidecar.unixSocket.enabled }}
- name: stepup-socket
  emptyDir: {}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}
