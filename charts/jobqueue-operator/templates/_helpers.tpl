{{/*
Chart name, truncated to 63 characters (the DNS label limit of object names).
*/}}
{{- define "jobqueue-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: `<release>-<chart>`, or the release name when it already
contains the chart name.
*/}}
{{- define "jobqueue-operator.fullname" -}}
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

{{/*
`<chart>-<version>` for the helm.sh/chart label.
*/}}
{{- define "jobqueue-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object of the release.
*/}}
{{- define "jobqueue-operator.labels" -}}
helm.sh/chart: {{ include "jobqueue-operator.chart" . }}
{{ include "jobqueue-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jobqueue
{{- end }}

{{/*
Labels that select the operator pods; never change them on upgrade (Deployment selectors are immutable).
*/}}
{{- define "jobqueue-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jobqueue-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the operator's ServiceAccount.
*/}}
{{- define "jobqueue-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jobqueue-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Operator image reference: the digest when given, else the tag, else the chart's appVersion.
*/}}
{{- define "jobqueue-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
True ("true") when the operator serves every namespace (`--all-namespaces`).
*/}}
{{- define "jobqueue-operator.allNamespaces" -}}
{{- if and .Values.rbac.clusterWide (not .Values.watchNamespaces) }}true{{- end }}
{{- end }}

{{/*
The namespaces served when not cluster-wide, as a JSON list: `watchNamespaces`, or the release namespace.
*/}}
{{- define "jobqueue-operator.namespaces" -}}
{{- if .Values.watchNamespaces }}
{{- toJson .Values.watchNamespaces }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/*
Operator replicas: `ha.replicas` with peering, else `replicaCount`.
*/}}
{{- define "jobqueue-operator.replicas" -}}
{{- if .Values.ha.enabled }}{{ .Values.ha.replicas }}{{ else }}{{ .Values.replicaCount }}{{ end }}
{{- end }}

{{/*
Flags of `jobqueue operator run`. Peering needs a distinct priority per pod (equal priorities pause
every operator), which the container derives from its pod IP at start.
*/}}
{{- define "jobqueue-operator.args" -}}
- --metrics-port={{ .Values.metrics.port }}
- --liveness=http://0.0.0.0:{{ .Values.health.port }}/healthz
{{- if .Values.ha.enabled }}
- --peering={{ .Values.ha.peeringName }}
{{- else }}
- --standalone
{{- end }}
{{- if include "jobqueue-operator.allNamespaces" . }}
- --all-namespaces
{{- else }}
{{- range (include "jobqueue-operator.namespaces" . | fromJsonArray) }}
- --namespace={{ . }}
{{- end }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
