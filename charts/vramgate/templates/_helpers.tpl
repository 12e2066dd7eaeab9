{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "vramgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource name prefix: <release>-vramgate, or the release name when it already says vramgate. */}}
{{- define "vramgate.fullname" -}}
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

{{- define "vramgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vramgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vramgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vramgate.labels" -}}
helm.sh/chart: {{ include "vramgate.chart" . }}
{{ include "vramgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vramgate
{{- end }}

{{- define "vramgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vramgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Cluster-scoped names carry the release namespace too, so two releases never collide. */}}
{{- define "vramgate.clusterName" -}}
{{- printf "%s-%s" (include "vramgate.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vramgate.webhookServiceName" -}}
{{- printf "%s-webhook" (include "vramgate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vramgate.metricsServiceName" -}}
{{- printf "%s-metrics" (include "vramgate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vramgate.certSecretName" -}}
{{- printf "%s-webhook-tls" (include "vramgate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The path the operator serves the validating webhook on (WEBHOOK_PATH in handlers/admission.py). */}}
{{- define "vramgate.webhookPath" -}}
/validate-llmdeployment
{{- end }}

{{- define "vramgate.webhookConfigurationName" -}}
{{- printf "%s.vramgate.dev" (include "vramgate.clusterName" .) | trunc 253 }}
{{- end }}

{{- define "vramgate.certDir" -}}
/etc/vramgate/webhook
{{- end }}

{{/* The operator's rights on workloads: in a ClusterRole when it watches every namespace, else in a
Role per watched namespace (templates/rbac.yaml). */}}
{{- define "vramgate.namespacedRules" }}
  # The LLMDeployments: watched, annotated and finalized by kopf, read by the reconciler.
  - apiGroups: [vramgate.dev]
    resources: [llmdeployments]
    verbs: [get, list, watch, patch, update]
  # Their status: phase, plan and conditions.
  - apiGroups: [vramgate.dev]
    resources: [llmdeployments/status]
    verbs: [get, patch, update]
  # The generated model servers (server-side apply) and their Services; Deployments are watched
  # to mirror their readiness into the LLMDeployment's status.
  - apiGroups: [apps]
    resources: [deployments]
    verbs: [create, get, list, watch, patch, update, delete]
  - apiGroups: [""]
    resources: [services]
    verbs: [create, get, list, watch, patch, update, delete]
  # Models larger than one node run as LeaderWorkerSets (only where that CRD is installed); one is
  # deleted when its model moves back to a single node.
  - apiGroups: [leaderworkerset.x-k8s.io]
    resources: [leaderworkersets]
    verbs: [create, get, patch, update, delete]
  # kopf posts the handlers' progress and errors as Events.
  - apiGroups: [""]
    resources: [events]
    verbs: [create, patch]
{{- end }}

{{/* One of the operator pod's containers: role "webhook" serves admission only (VRAMGATE_RECONCILE
false, no Lease), role "operator" reconciles while it holds the Lease and serves no webhook. Both read
the same placement and image settings, so what admission accepts is what the reconciler generates. */}}
{{- define "vramgate.container" }}
{{- $root := .root }}
{{- $values := $root.Values }}
{{- $webhook := eq .role "webhook" }}
{{- $livenessPort := ternary $values.webhook.livenessPort $values.livenessPort $webhook }}
{{- $metricsPort := ternary $values.webhook.metricsPort $values.metrics.port $webhook -}}
- name: {{ .role }}
  image: "{{ $values.image.repository }}:{{ $values.image.tag | default $root.Chart.AppVersion }}"
  imagePullPolicy: {{ $values.image.pullPolicy }}
  env:
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    - name: VRAMGATE_NAMESPACES
      value: {{ join "," $values.namespaces | quote }}
    - name: VRAMGATE_NAMESPACE_SELECTOR
      value: {{ $values.namespaceSelector | quote }}
    - name: VRAMGATE_LOG_FORMAT
      value: {{ $values.logFormat | quote }}
    - name: VRAMGATE_PLACEMENT_MODE
      value: {{ $values.placement.mode | quote }}
    - name: VRAMGATE_PLACEMENT_CATALOG_TYPES
      value: {{ join "," $values.placement.catalogTypes | quote }}
    - name: VRAMGATE_HAMI
      value: {{ $values.placement.hami | quote }}
    - name: VRAMGATE_SKIP_MEMORY_CHECK_NAMESPACES
      value: {{ join "," $values.placement.skipMemoryCheckNamespaces | quote }}
    - name: VRAMGATE_ALLOWED_IMAGES
      value: {{ join "," $values.imagePolicy.allowedRepositories | quote }}
    - name: VRAMGATE_LIVENESS_PORT
      value: {{ $livenessPort | quote }}
    - name: VRAMGATE_METRICS_PORT
      value: {{ ternary $metricsPort 0 $values.metrics.enabled | quote }}
    {{- if $webhook }}
    - name: VRAMGATE_RECONCILE
      value: "false"
    - name: VRAMGATE_WEBHOOK_MODE
      value: service
    - name: VRAMGATE_WEBHOOK_PORT
      value: {{ $values.webhook.port | quote }}
    - name: VRAMGATE_WEBHOOK_CERT_DIR
      value: {{ include "vramgate.certDir" $root | quote }}
    - name: VRAMGATE_WEBHOOK_SERVICE
      value: {{ include "vramgate.webhookServiceName" $root | quote }}
    - name: VRAMGATE_WEBHOOK_SERVICE_NAMESPACE
      value: {{ $root.Release.Namespace | quote }}
    - name: VRAMGATE_WEBHOOK_SERVICE_PORT
      value: {{ $values.webhook.servicePort | quote }}
    # Empty: the chart owns the ValidatingWebhookConfiguration; the operator only serves.
    - name: VRAMGATE_WEBHOOK_CONFIGURATION
      value: ""
    {{- else }}
    # This replica's identity in the leader Lease.
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: VRAMGATE_LEASE_NAME
      value: {{ include "vramgate.fullname" $root | quote }}
    - name: VRAMGATE_LEASE_SECONDS
      value: {{ $values.leaderElection.leaseSeconds | quote }}
    - name: VRAMGATE_CAPACITY_MISMATCH_THRESHOLD
      value: {{ $values.capacityMismatchThreshold | quote }}
    - name: VRAMGATE_WEBHOOK_MODE
      value: none
    {{- end }}
    {{- with $values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: {{ ternary "webhook-live" "liveness" $webhook }}
      containerPort: {{ $livenessPort }}
      protocol: TCP
    {{- if $webhook }}
    - name: webhook
      containerPort: {{ $values.webhook.port }}
      protocol: TCP
    {{- end }}
    {{- if $values.metrics.enabled }}
    - name: {{ ternary "webhook-metrics" "metrics" $webhook }}
      containerPort: {{ $metricsPort }}
      protocol: TCP
    {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: {{ ternary "webhook-live" "liveness" $webhook }}
    {{- toYaml $values.livenessProbe | nindent 4 }}
  # The webhook container is ready once it serves (standbys too): the Service only sends reviews to
  # ready pods. The operator container is ready once it runs, leading or standing by.
  readinessProbe:
    httpGet:
      path: /readyz
      port: {{ ternary "webhook-live" "liveness" $webhook }}
    {{- toYaml $values.readinessProbe | nindent 4 }}
  resources:
    {{- toYaml (ternary $values.webhook.resources $values.resources $webhook) | nindent 4 }}
  securityContext:
    {{- toYaml $values.securityContext | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- if $webhook }}
    - name: webhook-tls
      mountPath: {{ include "vramgate.certDir" $root }}
      readOnly: true
    {{- end }}
{{- end }}
