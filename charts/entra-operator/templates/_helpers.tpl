{{/* Chart name, overridable. */}}
{{- define "entra-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it already contains the chart name, else <release>-<chart>. */}}
{{- define "entra-operator.fullname" -}}
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

{{- define "entra-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades (a Deployment's selector is immutable). */}}
{{- define "entra-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "entra-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "entra-operator.labels" -}}
helm.sh/chart: {{ include "entra-operator.chart" . }}
{{ include "entra-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: entra-operator
{{- end }}

{{- define "entra-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "entra-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "entra-operator.leaseName" -}}
{{- default (include "entra-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "entra-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The Azure credential mode: workloadIdentity, clientSecret, clientCertificate or none. Fails on a
combination, and on a mode without the IDs it needs, so a broken install never reaches the cluster.
*/}}
{{- define "entra-operator.azureMode" -}}
{{- $az := .Values.azure }}
{{- $modes := list }}
{{- if $az.workloadIdentity.enabled }}{{ $modes = append $modes "workloadIdentity" }}{{ end }}
{{- if $az.clientSecret.existingSecret }}{{ $modes = append $modes "clientSecret" }}{{ end }}
{{- if $az.clientCertificate.existingSecret }}{{ $modes = append $modes "clientCertificate" }}{{ end }}
{{- if gt (len $modes) 1 }}
{{- fail (printf "azure: choose one credential mode, not %s" (join " + " $modes)) }}
{{- end }}
{{- $mode := default "none" (first $modes) }}
{{- if and (ne $mode "none") (not $az.clientId) }}
{{- fail (printf "azure.clientId is required with azure %s" $mode) }}
{{- end }}
{{- if and (has $mode (list "clientSecret" "clientCertificate")) (not $az.tenantId) }}
{{- fail (printf "azure.tenantId is required with azure %s" $mode) }}
{{- end }}
{{- $mode }}
{{- end }}

{{/* The RBAC rules the operator needs in each namespace it watches (or cluster-wide). */}}
{{- define "entra-operator.watchRules" -}}
- apiGroups: ["entra.bookme.io"]
  resources: ["appregistrations", "bankclients", "tenantmappings", "naaintegrations"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["entra.bookme.io"]
  resources: ["appregistrations/status", "bankclients/status", "tenantmappings/status", "naaintegrations/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["entra.bookme.io"]
  resources: ["appregistrations/finalizers", "bankclients/finalizers", "tenantmappings/finalizers", "naaintegrations/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["secrets", "configmaps"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
