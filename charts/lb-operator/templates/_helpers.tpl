{{/* The chart name, shortened to fit a label. */}}
{{- define "lb-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the prefix of every object the chart makes. */}}
{{- define "lb-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "lb-operator.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "lb-operator.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "lb-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lb-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "lb-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "lb-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "lb-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lb-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "lb-operator.image" -}}
{{- $repository := required "image.repository is not set, and no lb-operator image is published: build one from this repository (make image IMAGE=<registry>/lb-operator:<tag>; needs Docker), push it where your cluster can pull from, and install with --set image.repository=<registry>/lb-operator --set image.tag=<tag> (kind: kind load docker-image, then --set image.pullPolicy=Never). See the README, Install." .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* LBOP_LOCK_SCOPE from the map locks.scope: Kind=scope,Kind=scope (sorted). */}}
{{- define "lb-operator.lockScope" -}}
{{- $pairs := list }}
{{- range $kind, $scope := .Values.locks.scope }}
{{- $pairs = append $pairs (printf "%s=%s" $kind $scope) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}
