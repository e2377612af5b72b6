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
(sidecar.listen, 127.0.0.1:7171 by default). helm/examples/payments-app is a
complete, tested example.
*/}}

{{/* The stepup sidecar container, as one YAML list item. */}}
{{- define "stepup.sidecar.container" -}}
{{- include "stepup.container" (dict "ctx" . "listen" .Values.sidecar.listen "probes" .Values.sidecar.probes "native" .Values.sidecar.native) }}
{{- end }}

{{/* The volumes the sidecar mounts, as YAML list items. */}}
{{- define "stepup.sidecar.volumes" -}}
{{- include "stepup.volumes" . }}
{{- end }}

{{/*
Pod annotations for the application's pod template: the checksum that rolls
the pods when inline policies or config change (policies.rolloutOnChange).
Renders `key: value` lines, or nothing, so it merges into an annotations map
that has other keys, or goes under `with` when it may be alone.
*/}}
{{- define "stepup.sidecar.podAnnotations" -}}
{{- $sum := include "stepup.configChecksum" . }}
{{- if and .Values.policies.rolloutOnChange $sum -}}
checksum/stepup-config: {{ $sum }}
{{- end }}
{{- end }}
