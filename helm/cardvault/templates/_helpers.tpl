{{/* Names, labels and the pieces every cardvault pod shares. */}}

{{/* The chart name, or nameOverride. */}}
{{- define "cardvault.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-cardvault (or just the release name when it already says cardvault), or fullnameOverride. */}}
{{- define "cardvault.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "cardvault.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "cardvault.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "cardvault.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "cardvault.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cardvault
{{- end }}

{{/* Labels that select this release's pods; each workload adds app.kubernetes.io/component. */}}
{{- define "cardvault.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cardvault.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cardvault.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cardvault.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository@digest when a digest is pinned, else repository:tag (the tag defaulting to appVersion). */}}
{{- define "cardvault.image" -}}
{{- $repository := required "image.repository is required: the registry path of your cardvault image" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Pod-spec fields every pod of the chart carries: no host namespaces, no API token, the pod security context. */}}
{{- define "cardvault.podSecurity" -}}
automountServiceAccountToken: false
enableServiceLinks: false
hostNetwork: false
hostPID: false
hostIPC: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- if .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml .Values.imagePullSecrets | nindent 2 }}
{{- end }}
{{- end }}

{{/* Settings the API and the worker share: one configuration, so both sign and seal the same way. */}}
{{- define "cardvault.env" -}}
- name: NODE_ENV
  value: production
- name: LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret | quote }}
      key: {{ .Values.database.secretKey | quote }}
- name: DATABASE_POOL_SIZE
  value: {{ .Values.database.poolSize | int | quote }}
- name: MIGRATE_ON_START
  value: "false"
- name: METRICS_PORT
{{- if .Values.metrics.enabled }}
{{- if eq (int .Values.metrics.port) (int .Values.api.port) }}
{{- fail "metrics.port must differ from api.port: metrics are never served on the API port" }}
{{- end }}
  value: {{ .Values.metrics.port | int | quote }}
{{- else }}
  value: "off"
{{- end }}
{{- if .Values.redis.enabled }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret | quote }}
      key: {{ .Values.redis.secretKey | quote }}
{{- end }}
{{ include "cardvault.kmsEnv" . }}
- name: AWS_REGION
  value: {{ required "kms.region is required: the AWS region of kms.keyId" .Values.kms.region | quote }}
{{- if .Values.kms.endpoint }}
- name: AWS_ENDPOINT_URL_KMS
  value: {{ .Values.kms.endpoint | quote }}
{{- end }}
- name: POLICIES_DIR
  value: /app/policies
- name: AUDIT_ORIGIN
  value: {{ required "config.auditOrigin is required: the name this deployment signs audit checkpoints with" .Values.config.auditOrigin | quote }}
- name: TRUST_PROXY
  value: {{ .Values.config.trustProxy | quote }}
- name: API_KEY_CACHE_SECONDS
  value: {{ .Values.config.apiKeyCacheSeconds | int | quote }}
- name: CVC_TTL_SECONDS
  value: {{ .Values.config.cvcTtlSeconds | int | quote }}
- name: UPDATER_WORKER
  value: "off"
- name: UPDATER_NETWORK
  value: file-drop
{{- end }}

{{/* KMS_PROVIDER and KMS_KEY_ID: production refuses to start without them, the migration Job included. */}}
{{- define "cardvault.kmsEnv" -}}
- name: KMS_PROVIDER
  value: aws
- name: KMS_KEY_ID
  value: {{ required "kms.keyId is required: the KMS key (id, ARN or alias) that wraps data keys" .Values.kms.keyId | quote }}
{{- end }}

{{/* One egress rule: TCP to a destination's ipBlocks on its ports. Never called with no ipBlocks, which would
     allow every address. */}}
{{- define "cardvault.egressTo" -}}
{{- if not .ipBlocks }}
{{- fail "cardvault.egressTo: a destination without ipBlocks would allow every address" }}
{{- end -}}
- to:
    {{- range .ipBlocks }}
    - ipBlock:
        {{- toYaml . | nindent 8 }}
    {{- end }}
  ports:
    {{- range .ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
{{- end }}

{{/* Egress to the cluster DNS. */}}
{{- define "cardvault.egressDns" -}}
- to:
    - namespaceSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.egress.dns.namespaceLabels | nindent 10 }}
      podSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.egress.dns.podLabels | nindent 10 }}
  ports:
    - protocol: UDP
      port: {{ .Values.networkPolicy.egress.dns.port }}
    - protocol: TCP
      port: {{ .Values.networkPolicy.egress.dns.port }}
{{- end }}

{{/* Volumes every long-running pod mounts: the policies (read-only) and a small in-memory /tmp. */}}
{{- define "cardvault.commonVolumes" -}}
- name: policies
  configMap:
    name: {{ include "cardvault.fullname" . }}-policies
    # 0444: readable, never writable, by the vault.
    defaultMode: 292
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- end }}

{{- define "cardvault.commonVolumeMounts" -}}
- name: policies
  mountPath: /app/policies
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end }}
