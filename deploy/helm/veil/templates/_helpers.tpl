{{- define "veil.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "veil.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "veil.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "veil.secretName" -}}
{{- default (printf "%s-key" (include "veil.fullname" .)) .Values.key.existingSecret -}}
{{- end -}}

{{/* The pipeline as the workers read it: the user's, with the metrics
     endpoint and the key file set by the chart. */}}
{{- define "veil.pipeline" -}}
{{- $forced := dict "metrics" (dict "listen" (printf "0.0.0.0:%d" (int .Values.metrics.port))) "keys" (dict "hmac_key_file" "/run/veil/key/veil.key") -}}
{{- $cfg := mergeOverwrite (deepCopy .Values.pipeline) $forced -}}
{{- if hasKey $cfg "instance" -}}
{{- fail "pipeline.instance must not be set: each pod's name is its instance" -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
