{{/* Labels of every object: the component's name plus the chart's. */}}
{{- define "otel-pipeline.labels" -}}
app.kubernetes.io/name: {{ . }}
app.kubernetes.io/part-of: otel-pipeline
app.kubernetes.io/managed-by: Helm
{{- end -}}

{{/* Selector labels of a component. */}}
{{- define "otel-pipeline.selector" -}}
app.kubernetes.io/name: {{ . }}
{{- end -}}

{{/* Image of one of our binaries: (list $ "otel-collector"). */}}
{{- define "otel-pipeline.image" -}}
{{- $root := index . 0 -}}
{{- printf "%s/%s:%s" $root.Values.image.registry (index . 1) (toString $root.Values.image.tag) -}}
{{- end -}}

{{/* Pod securityContext: non-root with the given uid (and fsGroup when it writes volumes). */}}
{{- define "otel-pipeline.podSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ .uid }}
  runAsGroup: {{ .uid }}
  {{- if .fsGroup }}
  fsGroup: {{ .uid }}
  {{- end }}
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* Container securityContext of every container. */}}
{{- define "otel-pipeline.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: [ALL]
{{- end -}}

{{/* Soft anti-affinity over nodes for a component. */}}
{{- define "otel-pipeline.antiAffinity" -}}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              app.kubernetes.io/name: {{ . }}
{{- end -}}

{{/* Hash of the files a pod reads, as an annotation: a config change rolls the pods (kustomize
     gets the same effect from its hashed ConfigMap names). */}}
{{- define "otel-pipeline.checksum" -}}
{{- $root := index . 0 -}}
checksum/config: {{ $root.Files.Glob (index . 1) | toString | sha256sum }}
{{- end -}}

{{/* A Secret value: the one given, else the one already in the cluster, else a new random one. */}}
{{- define "otel-pipeline.secretValue" -}}
{{- $root := index . 0 -}}{{- $key := index . 1 -}}{{- $given := index . 2 -}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace "otel-pipeline-secrets" -}}
{{- if $given -}}
{{- $given | b64enc -}}
{{- else if and $existing (hasKey $existing.data $key) -}}
{{- index $existing.data $key -}}
{{- else -}}
{{- randAlphaNum 48 | b64enc -}}
{{- end -}}
{{- end -}}
