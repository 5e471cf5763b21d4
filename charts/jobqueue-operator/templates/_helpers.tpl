{{/*
Chart name, truncated to 63 characters (the DNS label limit of object names).
*/}}
{{- define "jobqueue-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: `<release>-<chart>`, or the release name when it already
contains the chart name, truncated to 63 characters as `helm create`'s helper does. Release names
may contain dots, which a DNS label (a Service's name, a pod's hostname) may not: they become dashes.
*/}}
{{- define "jobqueue-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | replace "." "-" | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | replace "." "-" | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
`<fullname>-<suffix>` within 63 characters: the full name is cut to make room for the suffix (the
release name itself, at most 53 characters, survives any suffix of up to 9).
Usage: include "jobqueue-operator.suffixedName" (list . "metrics")
*/}}
{{- define "jobqueue-operator.suffixedName" -}}
{{- $context := index . 0 }}
{{- $suffix := index . 1 }}
{{- $room := int (sub 62 (len $suffix)) }}
{{- printf "%s-%s" (include "jobqueue-operator.fullname" $context | trunc $room | trimSuffix "-") $suffix }}
{{- end }}

{{/*
Name of the metrics Service. Service names are DNS-1035 labels, which must start with a letter; a
full name that starts with a digit (release `2024-payments`) puts the suffix first instead.
*/}}
{{- define "jobqueue-operator.metricsServiceName" -}}
{{- $name := include "jobqueue-operator.suffixedName" (list . "metrics") }}
{{- if regexMatch "^[a-z]" $name }}
{{- $name }}
{{- else }}
{{- printf "metrics-%s" (include "jobqueue-operator.fullname" . | trunc 55 | trimSuffix "-") }}
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
Operator image reference: `[<registry>/]<repository>`, then `@<digest>` when given, else `:<tag>`
(default: the chart's appVersion). `make images REGISTRY=...` pushes exactly this reference.
*/}}
{{- define "jobqueue-operator.image" -}}
{{- $repository := .Values.image.repository }}
{{- with .Values.image.registry }}
{{- $repository = printf "%s/%s" . $repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
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
Operator replicas: `ha.replicas` with leader election, else `replicaCount`.
*/}}
{{- define "jobqueue-operator.replicas" -}}
{{- if .Values.ha.enabled }}{{ .Values.ha.replicas }}{{ else }}{{ .Values.replicaCount }}{{ end }}
{{- end }}

{{/*
Refuse lease timings the operator would refuse at start (a crash loop after a successful install):
client-go's rule, lease duration > renew deadline > retry period. JSON schema cannot compare two
values, so the check is here.
*/}}
{{- define "jobqueue-operator.checkLeaseTimings" -}}
{{- with .Values.ha }}
{{- if and .enabled (not (and (gt (int .leaseDurationSeconds) (int .renewDeadlineSeconds)) (gt (int .renewDeadlineSeconds) (int .retryPeriodSeconds)))) }}
{{- fail (printf "ha: need leaseDurationSeconds > renewDeadlineSeconds > retryPeriodSeconds (got %v > %v > %v)" .leaseDurationSeconds .renewDeadlineSeconds .retryPeriodSeconds) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Flags of `jobqueue operator run`. With HA, leader election through a Lease named after the release
in the release namespace (the pod's name and namespace come from the downward API).
*/}}
{{- define "jobqueue-operator.args" -}}
{{- include "jobqueue-operator.checkLeaseTimings" . }}
- --metrics-port={{ .Values.metrics.port }}
- --liveness=http://0.0.0.0:{{ .Values.health.port }}/healthz
{{- if .Values.ha.enabled }}
- --leader-elect
- --leader-elect-lease-name={{ include "jobqueue-operator.fullname" . }}
- --leader-elect-namespace={{ .Release.Namespace }}
- --leader-elect-lease-duration={{ .Values.ha.leaseDurationSeconds }}
- --leader-elect-renew-deadline={{ .Values.ha.renewDeadlineSeconds }}
- --leader-elect-retry-period={{ .Values.ha.retryPeriodSeconds }}
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
