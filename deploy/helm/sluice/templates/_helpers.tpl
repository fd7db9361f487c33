{{/* Names and labels. */}}
{{- define "sluice.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sluice.labels" -}}
app.kubernetes.io/part-of: sluice
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The pods Sluice runs in: the app's (sidecar) or the tier's (gateway). */}}
{{- define "sluice.podName" -}}
{{- if eq .Values.mode "sidecar" -}}{{ .Values.app.name }}{{- else -}}{{ include "sluice.fullname" . }}{{- end -}}
{{- end -}}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.podName" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sluice.secretName" -}}
{{- .Values.existingSecret | default (printf "%s-secrets" (include "sluice.fullname" .)) -}}
{{- end -}}

{{/* service.shutdown_timeout plus what runs before it inside the grace period. */}}
{{- define "sluice.gracePeriod" -}}
{{- if eq .Values.mode "sidecar" -}}
{{- add .Values.shutdownTimeoutSeconds .Values.app.drainSeconds 5 -}}
{{- else -}}
{{- add .Values.shutdownTimeoutSeconds 30 -}}
{{- end -}}
{{- end -}}

{{/*
collector.yaml, built from the values: receivers on the loopback for a sidecar
(only its pod sends) or on every address for the tier; health_check and metrics
on every address (the kubelet and Prometheus come through the pod IP); each
exporter on the disk log when diskLog.enabled; `config` merged over all of it.
*/}}
{{- define "sluice.config" -}}
{{- $sidecar := eq .Values.mode "sidecar" -}}
{{- $bind := ternary "127.0.0.1" "0.0.0.0" $sidecar -}}
{{- $grpc := dict "endpoint" (printf "%s:4317" $bind) -}}
{{- $http := dict "endpoint" (printf "%s:4318" $bind) -}}
{{- $auth := and (not $sidecar) .Values.gateway.auth -}}
{{- if $auth -}}
{{- $_ := set $grpc "auth" (dict "authenticator" "bearertokenauth") -}}
{{- $_ := set $http "auth" (dict "authenticator" "bearertokenauth") -}}
{{- end -}}
{{- $exporters := deepCopy .Values.exporters -}}
{{- if not $exporters -}}
{{- $exporters = dict "file" (dict "path" "/var/lib/sluice/logs.jsonl" "rotation" (dict "max_megabytes" 100 "max_backups" 10)) -}}
{{- end -}}
{{- if .Values.diskLog.enabled -}}
{{- range $id, $exporter := $exporters -}}
{{- $queue := get $exporter "sending_queue" | default dict -}}
{{- $_ := set $queue "storage" "file_storage" -}}
{{- $_ := set $exporter "sending_queue" $queue -}}
{{- end -}}
{{- end -}}
{{- $extensions := dict "health_check" (dict "endpoint" "0.0.0.0:13133") -}}
{{- $enabled := list "health_check" -}}
{{- if $auth -}}
{{- $_ := set $extensions "bearertokenauth" (dict "filename" "/etc/sluice/secrets/gateway-token") -}}
{{- $enabled = append $enabled "bearertokenauth" -}}
{{- end -}}
{{- if .Values.diskLog.enabled -}}
{{- $_ := set $extensions "file_storage" (dict "directory" "/var/lib/sluice/storage" "max_size" .Values.diskLog.maxSize) -}}
{{- $enabled = append $enabled "file_storage" -}}
{{- end -}}
{{- $pipelines := dict -}}
{{- range .Values.signals -}}
{{- $_ := set $pipelines . (dict "receivers" (list "otlp") "processors" (list "memory_limiter" "batch") "exporters" (keys $exporters | sortAlpha)) -}}
{{- end -}}
{{- $config := dict
  "receivers" (dict "otlp" (dict "protocols" (dict "grpc" $grpc "http" $http)))
  "processors" (dict
    "memory_limiter" (dict "check_interval" "1s" "limit_percentage" .Values.memoryLimiter.limitPercentage "spike_limit_percentage" .Values.memoryLimiter.spikeLimitPercentage)
    "batch" (dict "send_batch_size" .Values.batch.sendBatchSize "timeout" .Values.batch.timeout))
  "exporters" $exporters
  "extensions" $extensions
  "service" (dict
    "shutdown_timeout" (printf "%vs" .Values.shutdownTimeoutSeconds)
    "extensions" $enabled
    "telemetry" (dict "metrics" (dict "address" "0.0.0.0:8888") "logs" (dict "level" .Values.logLevel))
    "pipelines" $pipelines) -}}
{{- toYaml (mustMergeOverwrite $config (deepCopy .Values.config)) -}}
{{- end -}}

{{/* The downward-API variables: the Kubernetes attributes, for resourcedetection's k8s_downward detector and ${env:…} in the config. */}}
{{- define "sluice.downwardEnv" -}}
- name: K8S_POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: K8S_NAMESPACE_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
- name: K8S_NODE_NAME
  valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
- name: K8S_POD_UID
  valueFrom: {fieldRef: {fieldPath: metadata.uid}}
- name: K8S_POD_IP
  valueFrom: {fieldRef: {fieldPath: status.podIP}}
- name: K8S_APP_NAME
  valueFrom: {fieldRef: {fieldPath: "metadata.labels['app.kubernetes.io/name']"}}
{{- end -}}

{{/*
The Sluice container. In sidecar mode it is an init container with
restartPolicy: Always (a native sidecar, Kubernetes >= 1.29): ready before the
app starts, stopped after the app has exited. `helm get notes` prints it.
*/}}
{{- define "sluice.container" -}}
{{- $sidecar := eq .Values.mode "sidecar" -}}
name: sluice
image: {{ printf "%s:%s" .Values.image.repository .Values.image.tag | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
{{- if $sidecar }}
restartPolicy: Always
{{- end }}
args: [--config, /etc/sluice/config/collector.yaml, --data-directory, /var/lib/sluice]
ports:
  - {name: otlp-grpc, containerPort: 4317}
  - {name: otlp-http, containerPort: 4318}
  - {name: metrics, containerPort: 8888}
  - {name: health, containerPort: 13133}
env:
{{- include "sluice.downwardEnv" . | nindent 2 }}
{{- if $sidecar }}
startupProbe:
  httpGet: {path: /, port: health}
  periodSeconds: 1
  failureThreshold: 30
{{- end }}
readinessProbe:
  httpGet: {path: /, port: health}
  periodSeconds: 5
livenessProbe:
  httpGet: {path: /, port: health}
  periodSeconds: 10
resources:
{{- toYaml (ternary .Values.resources .Values.gateway.resources $sidecar) | nindent 2 }}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  readOnlyRootFilesystem: true
  allowPrivilegeEscalation: false
  capabilities: {drop: [ALL]}
  seccompProfile: {type: RuntimeDefault}
volumeMounts:
  - {name: sluice-config, mountPath: /etc/sluice/config, readOnly: true}
  - {name: sluice-secrets, mountPath: /etc/sluice/secrets, readOnly: true}
  - {name: sluice-data, mountPath: /var/lib/sluice}
{{- end -}}

{{/* The volumes the container mounts (the data volume unless a claim template holds it). */}}
{{- define "sluice.volumes" -}}
- name: sluice-config
  configMap: {name: {{ include "sluice.fullname" . }}-config}
- name: sluice-secrets
  secret: {secretName: {{ include "sluice.secretName" . }}, defaultMode: 0440}
{{- if not (and (eq .Values.mode "gateway") .Values.diskLog.persistence.enabled) }}
- name: sluice-data
  emptyDir: {sizeLimit: {{ .Values.diskLog.sizeLimit }}}
{{- end }}
{{- end -}}

{{- define "sluice.podSecurityContext" -}}
runAsNonRoot: true
fsGroup: 10001
seccompProfile: {type: RuntimeDefault}
{{- end -}}
