{{/*
Secrets: stepup reads its keys and the Redis URL and password from
environment variables set from a Secret, never from the config file the chart
renders into a ConfigMap.
*/}}

{{/* The Secret's name: secrets.existingSecret, or the one the chart creates
from secrets.values; empty when neither is set. */}}
{{- define "stepup.secretName" -}}
{{- $s := .Values.secrets -}}
{{- if $s.existingSecret }}{{ $s.existingSecret }}
{{- else if include "stepup.secretValues" . }}{{ printf "%s-secrets" (include "stepup.fullname" .) }}
{{- end }}
{{- end }}

{{/* "true" when secrets.values holds a non-empty value. */}}
{{- define "stepup.secretValues" -}}
{{- range $k, $v := .Values.secrets.values }}{{ if $v }}true{{ end }}{{ end }}
{{- end }}

{{/* The Secret's keys and the variables they set. */}}
{{- define "stepup.secretKeys" -}}
history-hash-key: STEPUP_HISTORY_HASH_KEY
redis-url: STEPUP_REDIS_URL
redis-password: STEPUP_REDIS_PASSWORD
decision-log-hash-key: STEPUP_DECISION_LOG_HASH_KEY
{{- end }}

{{/* The container's env entries for the Secret's keys (each optional), or
nothing without a Secret. Takes the chart context. */}}
{{- define "stepup.secretEnv" -}}
{{- $name := include "stepup.secretName" . }}
{{- if $name }}
{{- range $key, $var := include "stepup.secretKeys" . | fromYaml }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $name | quote }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- end }}
{{- end }}

{{/* Refuses secrets written into `config` (a ConfigMap). */}}
{{- define "stepup.validateSecrets" -}}
{{- $config := .Values.config | default "" }}
{{- if regexMatch "(?m)^\\s*hash_key\\s*=" $config }}
{{- fail "config: a `hash_key` is written in the config file, which the chart stores in a ConfigMap; put it in a Secret instead: secrets.existingSecret (keys history-hash-key, decision-log-hash-key) or secrets.values" }}
{{- end }}
{{- if regexMatch "(?m)^\\s*redis_url\\s*=\\s*[\"']rediss?://[^\"'/@]*:[^\"'/@]*@" $config }}
{{- fail "config: history.redis_url holds a password, and the chart stores the config file in a ConfigMap; put the URL or the password in a Secret instead: secrets.existingSecret (keys redis-url, redis-password) or secrets.values" }}
{{- end }}
{{- if and .Values.secrets.existingSecret (include "stepup.secretValues" .) }}
{{- fail "secrets: set existingSecret or values, not both" }}
{{- end }}
{{- end }}
