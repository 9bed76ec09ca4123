{{/*
Names. Every object name is at most 63 characters (DNS label), suffixed names included:
the prefix is cut so that the suffix always survives.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "image-prewarm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or the release name when it contains the chart name, or fullnameOverride. */}}
{{- define "image-prewarm.fullname" -}}
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

{{/* <fullname>-<suffix> within 63 characters. Call with (list . "suffix"). */}}
{{- define "image-prewarm.suffixed" -}}
{{- $ctx := index . 0 }}
{{- $suffix := index . 1 }}
{{- $prefix := include "image-prewarm.fullname" $ctx | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $prefix $suffix }}
{{- end }}

{{- define "image-prewarm.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "image-prewarm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "image-prewarm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "image-prewarm.labels" -}}
helm.sh/chart: {{ include "image-prewarm.chart" . }}
{{ include "image-prewarm.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: image-prewarm
{{- end }}

{{- define "image-prewarm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "image-prewarm.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository@digest, or repository:tag (tag defaults to the appVersion). */}}
{{- define "image-prewarm.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "image-prewarm.leaseName" -}}
{{- include "image-prewarm.suffixed" (list . "controller") }}
{{- end }}

{{/* The certificate is needed by the webhook and by the TLS task API. */}}
{{- define "image-prewarm.tlsEnabled" -}}
{{- if or .Values.webhook.enabled .Values.taskAPI.enabled }}true{{- end }}
{{- end }}

{{- define "image-prewarm.tlsSecretName" -}}
{{- if eq .Values.tls.mode "existingSecret" }}
{{- required "tls.existingSecret.name is required with tls.mode=existingSecret" .Values.tls.existingSecret.name }}
{{- else }}
{{- include "image-prewarm.suffixed" (list . "tls") }}
{{- end }}
{{- end }}

{{- define "image-prewarm.certificateName" -}}
{{- include "image-prewarm.suffixed" (list . "tls") }}
{{- end }}

{{/* The DNS names the Service answers to. */}}
{{- define "image-prewarm.dnsNames" -}}
{{- $svc := include "image-prewarm.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.tls.clusterDomain) | toJson }}
{{- end }}

{{/*
The webhook and task API certificate for tls.mode=helm, as YAML {ca, crt, key} (PEM).
An existing Secret (lookup: helm install/upgrade, `helm template --dry-run=server`) is
reused, so an upgrade keeps the CA and the caBundle stays valid; otherwise a CA and a
serving certificate are generated. Include it once per render: each call generates anew.
*/}}
{{- define "image-prewarm.helmCertificate" -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "image-prewarm.tlsSecretName" .) }}
{{- $data := dig "data" dict $existing }}
{{- if and (index $data "ca.crt") (index $data "tls.crt") (index $data "tls.key") }}
ca: {{ index $data "ca.crt" | b64dec | quote }}
crt: {{ index $data "tls.crt" | b64dec | quote }}
key: {{ index $data "tls.key" | b64dec | quote }}
{{- else }}
{{- $days := int .Values.tls.helm.validityDays }}
{{- $ca := genCA (printf "%s-ca" (include "image-prewarm.fullname" .)) $days }}
{{- $dnsNames := include "image-prewarm.dnsNames" . | fromJsonArray }}
{{- $cert := genSignedCert (index $dnsNames 2) nil $dnsNames $days $ca }}
ca: {{ $ca.Cert | quote }}
crt: {{ $cert.Cert | quote }}
key: {{ $cert.Key | quote }}
{{- end }}
{{- end }}

{{/* https when /metrics is served over TLS (metrics.secure), else http. */}}
{{- define "image-prewarm.metricsScheme" -}}
{{- ternary "https" "http" .Values.metrics.secure }}
{{- end }}

{{/*
The ServiceMonitor's tlsConfig: serviceMonitor.tlsConfig, or verification against the
certificate Secret's ca.crt for the Service's DNS name (tls.mode helm and cert-manager
write ca.crt), or no verification (existingSecret may hold no CA; no certificate at all
when neither the webhook nor the task API runs: the pair is then self-signed).
*/}}
{{- define "image-prewarm.scrapeTLSConfig" -}}
{{- if .Values.serviceMonitor.tlsConfig }}
{{- toYaml .Values.serviceMonitor.tlsConfig }}
{{- else if and (include "image-prewarm.tlsEnabled" .) (ne .Values.tls.mode "existingSecret") }}
serverName: {{ printf "%s.%s.svc" (include "image-prewarm.fullname" .) .Release.Namespace }}
ca:
  secret:
    name: {{ include "image-prewarm.tlsSecretName" . }}
    key: ca.crt
{{- else }}
insecureSkipVerify: true
{{- end }}
{{- end }}
