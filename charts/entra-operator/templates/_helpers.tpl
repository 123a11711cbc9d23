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
{{- /* Exactly the verbs the operator's calls need (each line says which call). */}}
{{- /* AppRegistration: watched and read; finalizer added/removed (JSON patch); children of a
       BankClient or NaaIntegration are created and updated by server-side apply (patch; create
       when the child does not exist yet) and deleted when the parent goes. */}}
- apiGroups: ["entra.bookme.io"]
  resources: ["appregistrations"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["entra.bookme.io"]
  resources: ["bankclients", "tenantmappings", "naaintegrations"]
  verbs: ["get", "list", "watch", "patch"]
{{- /* Status is written by merge patch; an AppRegistration's credential state also by update
       (PUT with the resourceVersion last read, so a write from a stale view fails with 409:
       src/credentials/ports.rs). */}}
- apiGroups: ["entra.bookme.io"]
  resources: ["appregistrations/status"]
  verbs: ["patch", "update"]
- apiGroups: ["entra.bookme.io"]
  resources: ["bankclients/status", "tenantmappings/status", "naaintegrations/status"]
  verbs: ["patch"]
{{- /* Owner references with blockOwnerDeletion need update on the owner's finalizers
       (OwnerReferencesPermissionEnforcement admission). */}}
- apiGroups: ["entra.bookme.io"]
  resources: ["appregistrations/finalizers", "bankclients/finalizers", "tenantmappings/finalizers", "naaintegrations/finalizers"]
  verbs: ["update"]
{{- /* Secrets: read (TenantMapping's consent probe), watched (owned by AppRegistrations), written by
       server-side apply; removed by garbage collection, never deleted by the operator. */}}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
{{- /* ConfigMaps: read before each write (only one that is absent or the operator's is written),
       then written by server-side apply. */}}
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "patch"]
{{- /* The event publisher (controllers::event_publisher) writes events.k8s.io/v1 Events: create, then patch a series. */}}
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{- define "entra-operator.policyRules" -}}
{{- /* The cluster administrator's EntraPolicies (cluster-scoped): watched (a change re-decides at
       once) and listed before each decision on
       consent or adoption, never written. Namespaces: read for their labels when a policy rule
       selects namespaces by label. */}}
- apiGroups: ["entra.bookme.io"]
  resources: ["entrapolicies"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get"]
{{- end }}
