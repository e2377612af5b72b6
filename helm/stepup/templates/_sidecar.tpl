{{/*
Public named templates for running stepup as a sidecar in another chart's pods.

Add stepup as a dependency of the application chart, set `stepup.mode:
sidecar` in its values, and include these with the subchart's context,
`.Subcharts.stepup`, so names, values and the image tag resolve exactly as in
the stepup chart (which renders the policy and config ConfigMaps they mount):

  spec:
    template:
      metadata:
        {{- with include "stepup.sidecar.podAnnotations" .Subcharts.stepup }}
        annotations:
          {{- . | nindent 10 }}
        {{- end }}
      spec:
        initContainers:    # `containers` when stepup.sidecar.native is false
          {{- include "stepup.sidecar.container" .Subcharts.stepup | nindent 10 }}
        containers:
          - name: app
            ...
        volumes:
          {{- include "stepup.sidecar.volumes" .Subcharts.stepup | nindent 10 }}

The application then calls Decide on the sidecar's listen address
(sidecar.listen, 127.0.0.1:7171 by default); its Envoy or Istio proxy can call
ext_authz Check on the same address (examples/istio).
helm/examples/payments-app is a complete, tested example.
*/}}

{{/* The stepup sidecar container, as one YAML list item. */}}
{{- define "stepup.sidecar.container" -}}
{{- include "stepup.container" (dict "ctx" . "listen" (include "stepup.sidecarListen" .) "probes" .Values.sidecar.probes "native" .Values.sidecar.native) }}
{{- end }}

{{/*
With sidecar.unixSocket: the volume mount the application container adds to
reach the socket (as one YAML list item; nothing otherwise). The application
then calls `unix:<dir>/<name>` (`stepup.sidecar.address`).
*/}}
{{- define "stepup.sidecar.socketVolumeMount" -}}
{{- if .Values.sidecar.unixSocket.enabled }}
- name: stepup-socket
  mountPath: {{ .Values.sidecar.unixSocket.dir }}
{{- end }}
{{- end }}

{{/*
The address the application calls: `unix:<dir>/<name>` with
sidecar.unixSocket, else `http://<sidecar.listen>` (`https://` with TLS).
*/}}
{{- define "stepup.sidecar.address" -}}
{{- if .Values.sidecar.unixSocket.enabled }}{{ include "stepup.sidecarListen" . }}
{{- else }}{{ ternary "https" "http" (ne (include "stepup.tlsSecretName" .) "") }}://{{ .Values.sidecar.listen }}
{{- end }}
{{- end }}

{{/* The volumes the sidecar mounts, as YAML list items. */}}
{{- define "stepup.sidecar.volumes" -}}
{{- include "stepup.volumes" . }}
{{- end }}

{{/*
Pod annotations for the application's pod template, as `key: value` lines (or
nothing), so they merge into an annotations map that has other keys, or go
under `with` when they may be alone:
  checksum/stepup-config    the config file, when `config` is set: stepup reads
                            it only at startup, so a change rolls the pods;
  checksum/stepup-policies  the inline policies, only with
                            policies.rolloutOnChange: stepup reloads the
                            mounted policy directory live, so by default a
                            policy change needs no restart;
  prometheus.io/scrape, prometheus.io/port, prometheus.io/path
                            with metrics.scrapeAnnotations: the admin port,
                            for Prometheus setups that discover pods by
                            annotation.
*/}}
{{- define "stepup.sidecar.podAnnotations" -}}
{{- $lines := list }}
{{- with include "stepup.configChecksum" . }}
{{- $lines = append $lines (printf "checksum/stepup-config: %s" .) }}
{{- end }}
{{- if .Values.policies.rolloutOnChange }}
{{- with include "stepup.policiesChecksum" . }}
{{- $lines = append $lines (printf "checksum/stepup-policies: %s" .) }}
{{- end }}
{{- end }}
{{- if and .Values.metrics.enabled .Values.metrics.scrapeAnnotations }}
{{- $lines = append $lines "prometheus.io/scrape: \"true\"" }}
{{- $lines = append $lines (printf "prometheus.io/port: %s" (toString (int .Values.admin.port) | quote)) }}
{{- $lines = append $lines "prometheus.io/path: /metrics" }}
{{- end }}
{{- join "\n" $lines }}
{{- end }}
