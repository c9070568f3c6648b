{{/* Names, labels, and the checks that stop a release that could not work. */}}

{{- define "dockerbot.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dockerbot.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dockerbot.labels" -}}
{{ include "dockerbot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "dockerbot.secretName" -}}
{{- .Values.slack.existingSecret | default (include "dockerbot.fullname" .) -}}
{{- end -}}

{{- define "dockerbot.tlsSecretName" -}}
{{- .Values.docker.tls.existingSecret | default (printf "%s-docker-tls" (include "dockerbot.fullname" .)) -}}
{{- end -}}

{{/* The container port the Service exposes: Slack's way in (HTTP mode), or /metrics (Socket Mode).
     Probes always use `health`: /readyz and /metrics are never on the public port. */}}
{{- define "dockerbot.servicePort" -}}
{{- if eq .Values.mode "http" -}}http{{- else -}}health{{- end -}}
{{- end -}}

{{- define "dockerbot.validate" -}}
{{- if not (has .Values.mode (list "socket" "http")) -}}
{{- fail "mode must be socket or http" -}}
{{- end -}}
{{- if lt (int .Values.replicaCount) 1 -}}
{{- fail "replicaCount must be at least 1" -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "dockerbot.postgresql" .)) -}}
{{- fail "replicaCount > 1 needs PostgreSQL (secretEnv.databaseUrl=postgresql+psycopg://..., or database.postgresqlInSecret=true): SQLite serves one replica" -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) .Values.docker.hostSocket.enabled -}}
{{- fail "replicaCount > 1 needs docker.host (one engine every replica reaches): with docker.hostSocket each pod would manage the engine of whichever node it runs on, and a card posted by one could be confirmed on another node" -}}
{{- end -}}
{{- if and .Values.docker.host .Values.docker.hostSocket.enabled -}}
{{- fail "set docker.host or docker.hostSocket.enabled, not both" -}}
{{- end -}}
{{- if not (or .Values.docker.host .Values.docker.hostSocket.enabled) -}}
{{- fail "set docker.host (the engine over TLS) or docker.hostSocket.enabled=true" -}}
{{- end -}}
{{- if and .Values.docker.host .Values.docker.tls.enabled (not .Values.docker.tls.existingSecret) -}}
{{- if not (and .Values.docker.tls.ca .Values.docker.tls.cert .Values.docker.tls.key) -}}
{{- fail "docker.tls needs ca, cert and key, or existingSecret" -}}
{{- end -}}
{{- end -}}
{{- if not .Values.slack.existingSecret -}}
{{- if not .Values.slack.botToken -}}
{{- fail "set slack.botToken or slack.existingSecret" -}}
{{- end -}}
{{- if and (eq .Values.mode "socket") (not .Values.slack.appToken) -}}
{{- fail "Socket Mode needs slack.appToken (xapp-...)" -}}
{{- end -}}
{{- if and (eq .Values.mode "http") (not .Values.slack.signingSecret) -}}
{{- fail "HTTP mode needs slack.signingSecret" -}}
{{- end -}}
{{- if and (eq .Values.mode "http") .Values.slack.appToken -}}
{{- fail "HTTP mode: leave slack.appToken empty (the bot uses Socket Mode whenever it is set)" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Non-empty when the bot's database is PostgreSQL, which several replicas can share. */}}
{{- define "dockerbot.postgresql" -}}
{{- if or (hasPrefix "postgresql" .Values.secretEnv.databaseUrl) .Values.database.postgresqlInSecret -}}true{{- end -}}
{{- end -}}
