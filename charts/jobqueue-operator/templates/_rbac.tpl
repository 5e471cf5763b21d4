{{/*
The operator's RBAC rules, least privilege, one rule per line. A test compares them with the API calls
the operator makes, so keep each rule on its own line.
*/}}

{{/*
Rules on namespaced resources: in the ClusterRole when `rbac.clusterWide`, else in a Role per served
namespace.
*/}}
{{- define "jobqueue-operator.namespacedRules" -}}
# JobQueue objects: kopf lists and watches them; the operator removes a finalizer old versions added.
- {apiGroups: ["jobqueue.dev"], resources: ["jobqueues"], verbs: ["list", "watch", "patch"]}
# JobQueue status: depth, replicas, conditions.
- {apiGroups: ["jobqueue.dev"], resources: ["jobqueues/status"], verbs: ["patch"]}
# Worker Deployments: created from the pod template (template kept up to date), or referenced;
# the owned ones are listed once per namespace and control-loop tick.
- {apiGroups: ["apps"], resources: ["deployments"], verbs: ["get", "list", "create", "patch"]}
# Scaling goes through the scale subresource.
- {apiGroups: ["apps"], resources: ["deployments/scale"], verbs: ["patch"]}
# Worker pods: idle ones are marked with controller.kubernetes.io/pod-deletion-cost before scale-down.
- {apiGroups: [""], resources: ["pods"], verbs: ["list", "patch"]}
# Events about JobQueues (kopf posts core v1 Events).
- {apiGroups: [""], resources: ["events"], verbs: ["create"]}
# The Redis connection Secret a JobQueue refers to.
- {apiGroups: [""], resources: ["secrets"], verbs: ["get"]}
# An HPA on the same Deployment is reported as a conflict, never changed.
- {apiGroups: ["autoscaling"], resources: ["horizontalpodautoscalers"], verbs: ["list"]}
{{- end }}

{{/*
Rules of leader election (with HA): the Lease, in the release namespace only.
*/}}
{{- define "jobqueue-operator.leaseRules" -}}
# The Lease the operator pods elect their leader with (read, created once, renewed by patches).
- {apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["get", "create", "patch"]}
{{- end }}

{{/*
Rules on cluster-scoped resources kopf needs in every mode.
*/}}
{{- define "jobqueue-operator.clusterRules" -}}
# kopf lists and watches namespaces to find the ones it serves.
- {apiGroups: [""], resources: ["namespaces"], verbs: ["list", "watch"]}
# kopf scans CRDs to notice when the JobQueue resource appears or changes.
- {apiGroups: ["apiextensions.k8s.io"], resources: ["customresourcedefinitions"], verbs: ["list", "watch"]}
{{- end }}
