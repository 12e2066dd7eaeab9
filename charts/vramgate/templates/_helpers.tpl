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
