"""deploy/k8s/: the kustomize base and the example overlay, checked offline (docs/kubernetes.md).

No cluster and no kustomize binary here: a minimal kustomize below builds the overlay (it
implements exactly the fields the overlay uses, and refuses any other, so a new field fails the
test instead of being ignored). Then:

- every core kind validates with kubernetes-validate (the Kubernetes OpenAPI schemas) for the
  oldest and the newest version named below, in strict mode (unknown fields are errors);
- every custom resource has the fields its operator requires. The CRDs cannot be downloaded
  here: the required fields are written from the operators' documentation, for KEDA 2.17
  (keda.sh/v1alpha1), RabbitMQ Cluster Operator 2.x and Messaging Topology Operator 1.x
  (rabbitmq.com/v1beta1), CloudNativePG 1.27-1.30 (postgresql.cnpg.io/v1), its Barman Cloud
  plugin 0.x (barmancloud.cnpg.io/v1) and Prometheus Operator 0.7x (monitoring.coreos.com/v1);
- cross-checks against Conveyor itself: queue names from its topology, env names from its
  Settings, the probes' port from CONVEYOR_HTTP_PORT, the grace period from the batch's
  bounds, the RabbitMQ policy from workers/runtime/policy.py, the server settings from
  deploy/postgres and deploy/rabbitmq, the roles from V005, every reference resolved.

Each check returns its problems; test_check_can_fail breaks the manifests one way per check and
asserts the check notices, so none of them passes by construction.
"""

from __future__ import annotations

import copy
import math
import re
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from conveyor.workers.bootstrap import WORKERS
from conveyor.workers.config import Settings, load_settings
from conveyor.workers.roles import ALL
from conveyor.workers.runtime import policy, topology
from conveyor.workers.runtime.throttle import DEFER_TIERS

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BASE = K8S / "base"
EXAMPLE = K8S / "overlays" / "example"
POSTGRESQL_CONF = REPO / "deploy" / "postgres" / "postgresql.conf"
RABBITMQ_CONF = REPO / "deploy" / "rabbitmq" / "rabbitmq.conf"
V005 = REPO / "db" / "migrations" / "V005__roles_and_rls.sql"

KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
Resource = dict[str, Any]


# --- a minimal kustomize ---------------------------------------------------------------------


class KustomizeError(Exception):
    pass


KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PersistentVolume", "StorageClass", "PriorityClass"}


def build(directory: Path) -> list[Resource]:
    """`kustomize build directory`, for the fields KUSTOMIZATION_FIELDS names. Stricter than
    kustomize where a slip would go unnoticed: a patch or replicas entry that matches nothing
    is an error."""
    path = directory / "kustomization.yaml"
    spec = yaml.safe_load(path.read_text())
    unknown = set(spec) - KUSTOMIZATION_FIELDS
    if unknown:
        raise KustomizeError(f"{path}: fields this loader does not implement: {sorted(unknown)}")
    api_version = str(spec.get("apiVersion", ""))
    if spec.get("kind") != "Kustomization" or not api_version.startswith("kustomize.config.k8s.io/"):
        raise KustomizeError(f"{path}: not a Kustomization")
    resources: list[Resource] = []
    for entry in spec.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            resources.extend(build(target))
        elif target.is_file():
            resources.extend(doc for doc in yaml.safe_load_all(target.read_text()) if doc is not None)
        else:
            raise KustomizeError(f"{path}: resource {entry!r} does not exist")
    for patch in spec.get("patches", []):
        _apply_patch(resources, patch, path)
    for image in spec.get("images", []):
        _set_image(resources, image)
    for replicas in spec.get("replicas", []):
        matched = [r for r in resources if r["kind"] in ("Deployment", "StatefulSet", "ReplicaSet")
                   and r["metadata"]["name"] == replicas["name"]]
        if not matched:
            raise KustomizeError(f"{path}: replicas for {replicas['name']!r} match no workload")
        for resource in matched:
            resource["spec"]["replicas"] = replicas["count"]
    if "namespace" in spec:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = spec["namespace"]
    seen: set[tuple[str, str, str, str]] = set()
    for resource in resources:
        key = (_group(resource), resource["kind"], resource["metadata"].get("namespace", ""),
               resource["metadata"]["name"])
        if key in seen:
            raise KustomizeError(f"{path}: {key} is defined twice")
        seen.add(key)
    return resources


def _group(resource: Resource) -> str:
    api_version = resource["apiVersion"]
    return api_version.split("/")[0] if "/" in api_version else ""


def _apply_patch(resources: list[Resource], patch: dict, path: Path) -> None:
    if set(patch) != {"target", "patch"} or not isinstance(patch["patch"], str):
        raise KustomizeError(f"{path}: only inline JSON 6902 patches with a target are implemented: {patch}")
    target = patch["target"]
    matched = [r for r in resources
               if r["kind"] == target["kind"] and r["metadata"]["name"] == target["name"]
               and ("group" not in target or _group(r) == target["group"])
               and ("version" not in target or r["apiVersion"].split("/")[-1] == target["version"])]
    if not matched:
        raise KustomizeError(f"{path}: patch target {target} matches nothing")
    operations = yaml.safe_load(patch["patch"])
    if not isinstance(operations, list):
        raise KustomizeError(f"{path}: a strategic-merge patch is not implemented, only JSON 6902 lists")
    for resource in matched:
        for operation in operations:
            json_patch(resource, operation)


def json_patch(document: Any, operation: dict) -> None:
    """One RFC 6902 operation (add, replace, remove, test), in place."""
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in operation["path"].split("/")[1:]]
    parent = document
    for token in tokens[:-1]:
        parent = parent[int(token)] if isinstance(parent, list) else parent[token]
    last, op = tokens[-1], operation["op"]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            parent.insert(index, operation["value"])
        elif op == "replace":
            parent[index] = operation["value"]
        elif op == "remove":
            del parent[index]
        elif op == "test":
            assert parent[index] == operation["value"], operation
        else:
            raise KustomizeError(f"JSON patch op {op!r} is not implemented")
        return
    if op in ("replace", "remove", "test") and last not in parent:
        raise KustomizeError(f"JSON patch {op} {operation['path']}: no such field")
    if op in ("add", "replace"):
        parent[last] = operation["value"]
    elif op == "remove":
        del parent[last]
    elif op == "test":
        assert parent[last] == operation["value"], operation
    else:
        raise KustomizeError(f"JSON patch op {op!r} is not implemented")


def _image_name(image: str) -> str:
    name = image.split("@")[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def _set_image(resources: list[Resource], image: dict) -> None:
    """kustomize's `images`: every containers[]/initContainers[] image named `name`, anywhere."""
    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    for container in value:
                        current = container.get("image", "")
                        if _image_name(current) == image["name"]:
                            tag = current[len(_image_name(current)):]
                            if "newTag" in image:
                                tag = f":{image['newTag']}"
                            if "digest" in image:
                                tag = f"@{image['digest']}"
                            container["image"] = image.get("newName", image["name"]) + tag
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)
    visit(resources)


# --- reading the manifests -----------------------------------------------------------------------


def of_kind(resources: list[Resource], kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def named(resources: list[Resource], kind: str, name: str) -> Resource | None:
    return next((r for r in of_kind(resources, kind) if r["metadata"]["name"] == name), None)


def the(resources: list[Resource], kind: str, name: str) -> Resource:
    found = named(resources, kind, name)
    assert found is not None, f"{kind}/{name}"
    return found


def pod_spec(resource: Resource) -> dict | None:
    if resource["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return resource["spec"]["template"]["spec"]
    if resource["kind"] == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def workloads(resources: list[Resource]) -> Iterator[tuple[Resource, dict]]:
    for resource in resources:
        spec = pod_spec(resource)
        if spec is not None:
            yield resource, spec


def containers(spec: dict) -> list[dict]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def is_conveyor(container: dict) -> bool:
    return _image_name(container["image"]).split("/")[-1] == "conveyor"


def conveyor_containers(resources: list[Resource]) -> Iterator[tuple[Resource, dict, dict]]:
    for resource, spec in workloads(resources):
        for container in containers(spec):
            if is_conveyor(container):
                yield resource, spec, container


def env_of(resources: list[Resource], container: dict) -> dict[str, Any]:
    """The container's environment: ConfigMap values from envFrom, then `env` (which wins);
    a Secret reference stays a ("secret", name, key) tuple."""
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            config_map = named(resources, "ConfigMap", source["configMapRef"]["name"])
            env.update((config_map or {}).get("data", {}))
        if "secretRef" in source:
            secret = named(resources, "Secret", source["secretRef"]["name"]) or {}
            env.update({key: ("secret", source["secretRef"]["name"], key) for key in secret_keys(secret)})
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        elif "secretKeyRef" in variable.get("valueFrom", {}):
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = ("secret", ref["name"], ref["key"])
        elif "configMapKeyRef" in variable.get("valueFrom", {}):
            ref = variable["valueFrom"]["configMapKeyRef"]
            env[variable["name"]] = (named(resources, "ConfigMap", ref["name"]) or {}).get("data", {}).get(ref["key"])
        else:
            env[variable["name"]] = None
    return env


def secret_keys(secret: Resource) -> set[str]:
    return set(secret.get("data", {})) | set(secret.get("stringData", {}))


def effective_settings(resources: list[Resource], container: dict) -> Settings:
    """Settings as this container would load them: its literal CONVEYOR_* values over the
    defaults (the secret ones, URLs, keep their defaults: only their names matter here)."""
    fields = {name[len("CONVEYOR_"):].lower(): value for name, value in env_of(resources, container).items()
              if name.startswith("CONVEYOR_") and isinstance(value, str)}
    return load_settings(**{k: v for k, v in fields.items() if k in Settings.model_fields})


def role_of(resource: Resource) -> str | None:
    """The role a Deployment runs: `conveyor run ROLE` (the image's entrypoint is `conveyor`)."""
    spec = pod_spec(resource)
    if resource["kind"] != "Deployment" or spec is None:
        return None
    args = spec["containers"][0].get("args", [])
    return args[1] if len(args) == 2 and args[0] == "run" else None


def pod_labels(resource: Resource) -> dict[str, str]:
    return resource["spec"]["template"]["metadata"].get("labels", {})


def selects(selector: dict, labels: dict[str, str]) -> bool:
    match = selector.get("matchLabels", selector)
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def url_parts(url: str) -> urllib.parse.SplitResult:
    return urllib.parse.urlsplit(url)


def conf_values(path: Path) -> dict[str, str]:
    """key = value lines of postgresql.conf / rabbitmq.conf, comments and quotes removed."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            values[key] = value.strip("'")
    return values


def queue_names() -> set[str]:
    """Every queue Conveyor declares (workers/runtime/topology.py), with the default tiers."""
    delays = Settings.model_fields["retry_delays"].default
    names = {topology.UNROUTED}
    for spec in WORKERS.values():
        names |= {spec.queue, topology.dlq_name(spec.queue)}
        names |= {topology.retry_queue_name(spec.queue, d) for d in delays}
        if spec.rate_limited:
            names |= {topology.defer_queue_name(spec.queue, d) for d in DEFER_TIERS}
    return names


def values_at(node: Any, path: str) -> list[Any]:
    """The values at a dotted path; `name[]` steps into every item of a list. A missing step
    gives a `MISSING` value, so a required field that is absent is reported."""
    values = [node]
    for step in path.split("."):
        each = step.endswith("[]")
        key = step[:-2] if each else step
        found: list[Any] = []
        for value in values:
            child = value.get(key, MISSING) if isinstance(value, dict) else MISSING
            if each and isinstance(child, list):
                found.extend(child)
            else:
                found.append(child)
        values = found
    return values


MISSING = object()


# --- the builds --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base() -> list[Resource]:
    return build(BASE)


@pytest.fixture(scope="module")
def example() -> list[Resource]:
    return build(EXAMPLE)


# --- core kinds: the Kubernetes schemas --------------------------------------------------------

CORE_GROUPS = {"", "apps", "batch", "policy", "autoscaling", "networking.k8s.io", "rbac.authorization.k8s.io"}


def is_core(resource: Resource) -> bool:
    return _group(resource) in CORE_GROUPS


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_kinds_validate_against_the_kubernetes_schemas(example: list[Resource], version: str) -> None:
    core = [r for r in example if is_core(r)]
    assert {r["kind"] for r in core} >= {"Namespace", "ServiceAccount", "ConfigMap", "Secret", "Job", "CronJob",
                                         "Deployment", "Service", "PodDisruptionBudget"}
    errors = []
    for resource in core:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{resource['kind']}/{resource['metadata']['name']}: {error.message} at {list(error.path)}")
    assert not errors, "\n".join(errors)


def test_the_validator_refuses_a_broken_deployment(example: list[Resource]) -> None:
    """The schema check is real: a Deployment with a misspelt field or a wrong type fails it."""
    broken = copy.deepcopy(the(example, "Deployment", "conveyor-orders"))
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 150
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)
    broken = copy.deepcopy(the(example, "Deployment", "conveyor-orders"))
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


# --- custom resources: the fields each operator requires ----------------------------------------

# (apiVersion, kind) -> {dotted path: required type}. Types: str, int, list (non-empty), dict.
CUSTOM_RESOURCES: dict[tuple[str, str], dict[str, type]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): {
        "spec.scaleTargetRef.name": str, "spec.triggers": list, "spec.triggers[].type": str,
        "spec.triggers[].metadata": dict, "spec.minReplicaCount": int, "spec.maxReplicaCount": int},
    ("keda.sh/v1alpha1", "TriggerAuthentication"): {
        "spec.secretTargetRef": list, "spec.secretTargetRef[].parameter": str,
        "spec.secretTargetRef[].name": str, "spec.secretTargetRef[].key": str},
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): {"spec.replicas": int, "spec.image": str},
    ("rabbitmq.com/v1beta1", "User"): {
        "spec.rabbitmqClusterReference.name": str, "spec.importCredentialsSecret.name": str},
    ("rabbitmq.com/v1beta1", "Permission"): {
        "spec.vhost": str, "spec.userReference.name": str, "spec.permissions.configure": str,
        "spec.permissions.write": str, "spec.permissions.read": str, "spec.rabbitmqClusterReference.name": str},
    ("rabbitmq.com/v1beta1", "Policy"): {
        "spec.name": str, "spec.pattern": str, "spec.definition": dict, "spec.applyTo": str,
        "spec.priority": int, "spec.vhost": str, "spec.rabbitmqClusterReference.name": str},
    ("postgresql.cnpg.io/v1", "Cluster"): {
        "spec.instances": int, "spec.imageName": str, "spec.storage.size": str,
        "spec.postgresql.synchronous.method": str, "spec.postgresql.synchronous.number": int,
        "spec.postgresql.parameters": dict, "spec.bootstrap.initdb.database": str,
        "spec.bootstrap.initdb.owner": str, "spec.bootstrap.initdb.secret.name": str,
        "spec.managed.roles[].name": str, "spec.plugins[].name": str},
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): {
        "spec.schedule": str, "spec.cluster.name": str, "spec.method": str},
    ("barmancloud.cnpg.io/v1", "ObjectStore"): {
        "spec.configuration.destinationPath": str, "spec.configuration.s3Credentials.accessKeyId.name": str,
        "spec.configuration.s3Credentials.accessKeyId.key": str,
        "spec.configuration.s3Credentials.secretAccessKey.name": str,
        "spec.configuration.s3Credentials.secretAccessKey.key": str},
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "spec.selector": dict, "spec.endpoints": list, "spec.endpoints[].port": str},
}
ENUMS: dict[tuple[str, str], dict[str, set]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): {"spec.triggers[].type": {"rabbitmq"}},
    ("rabbitmq.com/v1beta1", "Policy"): {
        "spec.applyTo": {"queues", "exchanges", "all", "classic_queues", "quorum_queues", "streams"}},
    ("postgresql.cnpg.io/v1", "Cluster"): {"spec.postgresql.synchronous.method": {"any", "first"},
                                           "spec.postgresql.synchronous.dataDurability": {"required", "preferred"}},
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): {
        "spec.method": {"barmanObjectStore", "volumeSnapshot", "plugin"},
        "spec.backupOwnerReference": {"none", "self", "cluster"},
        "spec.target": {"primary", "prefer-standby"}},
}
TYPE_NAMES = {str: "a string", int: "an integer", list: "a non-empty list", dict: "a mapping"}


def check_every_kind_is_checked(resources: list[Resource]) -> list[str]:
    return [f"{r['apiVersion']} {r['kind']}/{r['metadata']['name']}: neither a core kind nor a checked custom resource"
            for r in resources if not is_core(r) and (r["apiVersion"], r["kind"]) not in CUSTOM_RESOURCES]


def check_custom_resources(resources: list[Resource]) -> list[str]:
    problems = []
    for resource in resources:
        key = (resource["apiVersion"], resource["kind"])
        where = f"{resource['kind']}/{resource['metadata']['name']}"
        for path, kind in CUSTOM_RESOURCES.get(key, {}).items():
            for value in values_at(resource, path):
                ok = (isinstance(value, kind) and not isinstance(value, bool) if kind is int
                      else isinstance(value, kind) and (kind is not list or bool(value)))
                if not ok:
                    problems.append(f"{where}: {path} must be {TYPE_NAMES[kind]}")
        for path, allowed in ENUMS.get(key, {}).items():
            problems += [f"{where}: {path} {value!r} is not one of {sorted(allowed)}"
                         for value in values_at(resource, path) if value is not MISSING and value not in allowed]
        if resource["kind"] == "ScaledObject":
            spec = resource["spec"]
            for trigger in spec.get("triggers", []):  # metadata is map[string]string in the CRD
                problems += [f"{where}: trigger metadata {k} must be a string"
                             for k, v in trigger.get("metadata", {}).items() if not isinstance(v, str)]
            if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 0):
                problems.append(f"{where}: minReplicaCount > maxReplicaCount")
        if resource["kind"] == "Cluster":
            spec = resource["spec"]
            problems += [f"{where}: parameter {k} must be a string (map[string]string)"
                         for k, v in spec.get("postgresql", {}).get("parameters", {}).items() if not isinstance(v, str)]
            number = spec.get("postgresql", {}).get("synchronous", {}).get("number", 0)
            if not 1 <= number < spec.get("instances", 0):
                problems.append(f"{where}: synchronous.number {number} must be 1..instances-1")
        if resource["kind"] == "ScheduledBackup":
            if len(str(resource["spec"].get("schedule", "")).split()) != 6:
                problems.append(f"{where}: schedule needs six cron fields (seconds first)")
            plugin = resource["spec"].get("pluginConfiguration", {}).get("name")
            if resource["spec"].get("method") == "plugin" and not plugin:
                problems.append(f"{where}: method plugin needs pluginConfiguration.name")
    return problems


# --- cross-checks against Conveyor ---------------------------------------------------------------

OTHER_ENV = {"PGPASSWORD"}  # libpq's own: the database password, kept out of the URL


def check_env_names_are_settings(resources: list[Resource]) -> list[str]:
    known = {f"CONVEYOR_{name.upper()}" for name in Settings.model_fields}
    problems = []
    for config_map in of_kind(resources, "ConfigMap"):
        problems += [f"ConfigMap/{config_map['metadata']['name']}: {key} is no Conveyor setting"
                     for key in config_map.get("data", {}) if key not in known]
    for resource, _, container in conveyor_containers(resources):
        for variable in container.get("env", []):
            name = variable["name"]
            if (name.startswith("CONVEYOR_") and name not in known) or (not name.startswith("CONVEYOR_")
                                                                          and name not in OTHER_ENV):
                problems.append(f"{resource['kind']}/{resource['metadata']['name']}: {name} is no Conveyor setting")
    return problems


def check_settings_values_load(resources: list[Resource]) -> list[str]:
    problems = []
    for resource, _, container in conveyor_containers(resources):
        try:
            effective_settings(resources, container)
        except Exception as error:  # noqa: BLE001 - ConfigError names the setting
            problems.append(f"{resource['kind']}/{resource['metadata']['name']}: {error}")
    return problems


def check_roles_have_deployments(resources: list[Resource]) -> list[str]:
    roles = [role_of(d) for d in of_kind(resources, "Deployment")]
    problems = [f"Deployment/{d['metadata']['name']}: runs no single role (`run ROLE`)"
                for d in of_kind(resources, "Deployment") if role_of(d) not in ALL]
    problems += [f"role {role} has {roles.count(role)} Deployments, not 1" for role in ALL if roles.count(role) != 1]
    for resource, _, container in conveyor_containers(resources):
        if container.get("command") not in (None, ["conveyor"]):
            problems.append(f"{resource['kind']}/{resource['metadata']['name']}: overrides the `conveyor` entrypoint")
    return problems


def check_probes(resources: list[Resource]) -> list[str]:
    problems = []
    for deployment in of_kind(resources, "Deployment"):
        where = f"Deployment/{deployment['metadata']['name']}"
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        port = env_of(resources, container).get("CONVEYOR_HTTP_PORT")
        if not isinstance(port, str) or not port.isdigit() or int(port) == 0:
            problems.append(f"{where}: CONVEYOR_HTTP_PORT must be a fixed port, is {port!r}")
            continue
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container.get(probe, {}).get("httpGet")
            if get is None:
                problems.append(f"{where}: no {probe} httpGet")
                continue
            if get.get("path") != path:
                problems.append(f"{where}: {probe} asks {get.get('path')!r}, not {path}")
            target = ports.get(get["port"]) if isinstance(get["port"], str) else get["port"]
            if target != int(port):
                problems.append(f"{where}: {probe} port {get['port']!r} is {target}, CONVEYOR_HTTP_PORT is {port}")
    return problems


def longest_stop_seconds(settings: Settings, role: str) -> float:
    """How long SIGTERM may have to wait, from the settings: the batch in hand (its window,
    then a transaction whose every local retry may run a statement to its timeout), and the
    project's own bound on any loop's tick (CONVEYOR_LIVENESS_TIMEOUT: "longer than a batch").
    The relay's batch may also wait out a blocked publish."""
    statement = settings.statement_timeout_ms / 1000
    batch = settings.batch_window_ms / 1000 + (settings.local_retries + 1) * statement
    if role == "relay":
        batch = max(batch, settings.blocked_connection_timeout + statement)
    return max(batch, settings.liveness_timeout)


def check_grace_periods(resources: list[Resource]) -> list[str]:
    problems = []
    for deployment in of_kind(resources, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        settings = effective_settings(resources, spec["containers"][0])
        needed = longest_stop_seconds(settings, role_of(deployment) or "")
        grace = spec.get("terminationGracePeriodSeconds", 30)
        if grace <= needed:
            problems.append(f"Deployment/{deployment['metadata']['name']}: terminationGracePeriodSeconds {grace} "
                            f"is not longer than a batch may take ({needed:g} s)")
    return problems


def check_disruption_budgets(resources: list[Resource]) -> list[str]:
    budgets = of_kind(resources, "PodDisruptionBudget")
    rabbitmq = [{"app.kubernetes.io/name": c["metadata"]["name"]} for c in of_kind(resources, "RabbitmqCluster")]
    problems = []
    for deployment in of_kind(resources, "Deployment"):
        matching = [b for b in budgets if selects(b["spec"]["selector"], pod_labels(deployment))]
        if len(matching) != 1:
            problems.append(f"Deployment/{deployment['metadata']['name']}: {len(matching)} PodDisruptionBudgets, not 1")
        if "minAvailable" in (matching[0]["spec"] if matching else {}) and deployment["spec"].get("replicas") == 1:
            problems.append(f"Deployment/{deployment['metadata']['name']}: minAvailable on one replica blocks drains")
    for budget in budgets:
        pods = [pod_labels(d) for d in of_kind(resources, "Deployment")] + rabbitmq
        if not any(selects(budget["spec"]["selector"], labels) for labels in pods):
            problems.append(f"PodDisruptionBudget/{budget['metadata']['name']}: selects no pods")
    return problems


def check_scaled_objects(resources: list[Resource]) -> list[str]:
    problems = []
    declared = queue_names()
    scaled = of_kind(resources, "ScaledObject")
    authentications = {a["metadata"]["name"] for a in of_kind(resources, "TriggerAuthentication")}
    for deployment in of_kind(resources, "Deployment"):
        name, role = deployment["metadata"]["name"], role_of(deployment)
        targeting = [s for s in scaled if s["spec"]["scaleTargetRef"]["name"] == name]
        if role not in WORKERS:  # services: fixed replicas
            if targeting or "replicas" not in deployment["spec"]:
                problems.append(f"Deployment/{name}: a service role has fixed replicas and no ScaledObject")
            continue
        if len(targeting) != 1:
            problems.append(f"Deployment/{name}: consumes {WORKERS[role].queue} but has {len(targeting)} ScaledObjects")
            continue
        if "replicas" in deployment["spec"]:
            problems.append(f"Deployment/{name}: sets replicas although KEDA's HPA owns them")
        spec = targeting[0]["spec"]
        if spec.get("minReplicaCount", 0) < 1:
            problems.append(f"ScaledObject/{name}: minReplicaCount must be >= 1 (a queue without consumers alerts)")
        for trigger in spec["triggers"]:
            metadata = trigger["metadata"]
            if metadata.get("queueName") not in declared or metadata.get("queueName") != WORKERS[role].queue:
                problems.append(f"ScaledObject/{name}: queueName {metadata.get('queueName')!r} is not "
                                f"{WORKERS[role].queue}, the queue `run {role}` consumes")
            if metadata.get("mode") != "QueueLength" or not str(metadata.get("value", "")).isdigit() \
                    or int(metadata["value"]) < 1:
                problems.append(f"ScaledObject/{name}: needs mode QueueLength and a positive value per replica")
            if trigger.get("authenticationRef", {}).get("name") not in authentications:
                problems.append(f"ScaledObject/{name}: authenticationRef names no TriggerAuthentication")
    names = {d["metadata"]["name"] for d in of_kind(resources, "Deployment")}
    problems += [f"ScaledObject/{s['metadata']['name']}: targets no Deployment"
                 for s in scaled if s["spec"]["scaleTargetRef"]["name"] not in names]
    return problems


def check_migrations(resources: list[Resource]) -> list[str]:
    problems = []
    args = [(r, c.get("args", [])) for r, _, c in conveyor_containers(resources)]
    jobs = [r for r, a in args if r["kind"] == "Job" and a == ["db", "migrate"]]
    if len(jobs) != 1:
        problems.append(f"{len(jobs)} Jobs run `conveyor db migrate`, not 1")
    contract = [r for r, a in args if "--contract" in a]
    if len(contract) != 1 or contract[0]["kind"] != "CronJob" or contract[0]["spec"].get("suspend") is not True:
        problems.append("`db migrate --contract` must be one suspended CronJob, run by hand after the rollout")
    elif next(a for r, a in args if r is contract[0]) != ["db", "migrate", "--contract"]:
        problems.append("the contract CronJob must run exactly `db migrate --contract`")
    if not [r for r, a in args if r["kind"] == "Job" and a == ["topology", "declare"]]:
        problems.append("no Job runs `conveyor topology declare`")
    return problems


def secret_references(resources: list[Resource]) -> Iterator[tuple[str, str, str | None]]:
    """(who, secret name, key or None) for every Secret the manifests read."""
    for resource, spec in workloads(resources):
        who = f"{resource['kind']}/{resource['metadata']['name']}"
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                yield who, volume["secret"]["secretName"], None
        for container in containers(spec):
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    yield who, source["secretRef"]["name"], None
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    yield who, ref["name"], ref["key"]
    for auth in of_kind(resources, "TriggerAuthentication"):
        for ref in auth["spec"].get("secretTargetRef", []):
            yield f"TriggerAuthentication/{auth['metadata']['name']}", ref["name"], ref["key"]
    for user in of_kind(resources, "User"):
        for key in ("username", "password"):
            yield f"User/{user['metadata']['name']}", user["spec"]["importCredentialsSecret"]["name"], key
    for cluster in of_kind(resources, "Cluster"):
        who = f"Cluster/{cluster['metadata']['name']}"
        for key in ("username", "password"):
            yield who, cluster["spec"]["bootstrap"]["initdb"]["secret"]["name"], key
        for role in cluster["spec"].get("managed", {}).get("roles", []):
            if "passwordSecret" in role:
                for key in ("username", "password"):
                    yield who, role["passwordSecret"]["name"], key
    for store in of_kind(resources, "ObjectStore"):
        for ref in store["spec"]["configuration"]["s3Credentials"].values():
            yield f"ObjectStore/{store['metadata']['name']}", ref["name"], ref["key"]


def check_references(resources: list[Resource]) -> list[str]:
    problems = []
    for who, name, key in secret_references(resources):
        secret = named(resources, "Secret", name)
        if secret is None:
            problems.append(f"{who}: Secret {name} is not in the kustomization")
        elif key is not None and key not in secret_keys(secret):
            problems.append(f"{who}: Secret {name} has no key {key}")
    for resource, spec in workloads(resources):
        who = f"{resource['kind']}/{resource['metadata']['name']}"
        if named(resources, "ServiceAccount", spec.get("serviceAccountName", "default")) is None:
            problems.append(f"{who}: ServiceAccount {spec.get('serviceAccountName', 'default')} is not defined")
        for container in containers(spec):
            for source in container.get("envFrom", []):
                if "configMapRef" in source and named(resources, "ConfigMap", source["configMapRef"]["name"]) is None:
                    problems.append(f"{who}: ConfigMap {source['configMapRef']['name']} is not defined")
    clusters = {c["metadata"]["name"] for c in of_kind(resources, "RabbitmqCluster")}
    for kind in ("User", "Permission", "Policy"):
        problems += [f"{kind}/{r['metadata']['name']}: names no RabbitmqCluster"
                     for r in of_kind(resources, kind) if r["spec"]["rabbitmqClusterReference"]["name"] not in clusters]
    users = {u["metadata"]["name"] for u in of_kind(resources, "User")}
    problems += [f"Permission/{p['metadata']['name']}: names no User" for p in of_kind(resources, "Permission")
                 if p["spec"]["userReference"]["name"] not in users]
    databases = {c["metadata"]["name"]: c for c in of_kind(resources, "Cluster")}
    stores = {s["metadata"]["name"] for s in of_kind(resources, "ObjectStore")}
    for backup in of_kind(resources, "ScheduledBackup"):
        cluster = databases.get(backup["spec"]["cluster"]["name"])
        if cluster is None:
            problems.append(f"ScheduledBackup/{backup['metadata']['name']}: names no Cluster")
            continue
        plugins = {p["name"] for p in cluster["spec"].get("plugins", [])}
        if backup["spec"].get("method") == "plugin" and backup["spec"]["pluginConfiguration"]["name"] not in plugins:
            problems.append(f"ScheduledBackup/{backup['metadata']['name']}: its plugin is not the Cluster's")
    for cluster in databases.values():
        archivers = [p for p in cluster["spec"].get("plugins", []) if p.get("isWALArchiver")]
        if len(archivers) != 1 or archivers[0].get("parameters", {}).get("barmanObjectName") not in stores:
            problems.append(f"Cluster/{cluster['metadata']['name']}: needs one WAL archiver naming an ObjectStore")
    return problems


def check_metrics_services(resources: list[Resource]) -> list[str]:
    problems = []
    services = of_kind(resources, "Service")
    monitors = of_kind(resources, "ServiceMonitor")
    for deployment in of_kind(resources, "Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        port_names = {p.get("name") for p in container.get("ports", [])}
        exposing = [s for s in services if selects(s["spec"].get("selector", {}), pod_labels(deployment))
                    and any(p.get("targetPort") in port_names for p in s["spec"]["ports"])]
        if not exposing:
            problems.append(f"Deployment/{deployment['metadata']['name']}: no Service exposes its metrics port")
        for monitor in monitors:
            scraped = {e["port"] for e in monitor["spec"]["endpoints"]}
            if not any(selects(monitor["spec"]["selector"], s["metadata"].get("labels", {}))
                       and scraped & {p.get("name") for p in s["spec"]["ports"]} for s in exposing):
                problems.append(f"ServiceMonitor/{monitor['metadata']['name']}: does not scrape "
                                f"{deployment['metadata']['name']}")
    return problems


def check_rabbitmq_policies(resources: list[Resource]) -> list[str]:
    """The policies match what Conveyor needs: the inbound bound exactly as `conveyor topology
    declare` applies it, the DLQs without a delivery limit on RabbitMQ 4, one policy per queue."""
    problems = []
    policies = {p["spec"]["name"]: p["spec"] for p in of_kind(resources, "Policy")}
    config: dict[str, str] = (named(resources, "ConfigMap", "conveyor-config") or {}).get("data", {})
    max_length = int(config.get("CONVEYOR_QUEUE_MAX_LENGTH", Settings.model_fields["queue_max_length"].default))
    expected = policy.inbound_bound((spec.queue for spec in WORKERS.values()), max_length=max_length)
    bound = policies.get(expected.name)
    if bound is None:
        problems.append(f"no Policy {expected.name}")
    elif (bound["pattern"], bound["definition"], bound["priority"], bound["applyTo"]) != \
            (expected.pattern, expected.definition, expected.priority, expected.apply_to):
        problems.append(f"Policy {expected.name} differs from what `conveyor topology declare` applies: "
                        f"{expected.body()}")
    dlqs = {topology.dlq_name(spec.queue) for spec in WORKERS.values()}
    images = [c["spec"]["image"] for c in of_kind(resources, "RabbitmqCluster")]
    majors = [int(m[1]) for m in (re.match(r"rabbitmq:(\d+)", image) for image in images) if m]
    if any(major >= 4 for major in majors):
        keep = [p for p in policies.values() if p["definition"] == {"delivery-limit": -1}]
        covered = {q for p in keep for q in queue_names() if re.search(p["pattern"], q)}
        if covered != dlqs:
            problems.append(f"RabbitMQ 4 limits quorum queues to 20 deliveries: a delivery-limit -1 policy must "
                            f"cover exactly the DLQs {sorted(dlqs)}, covers {sorted(covered)}")
    for queue in queue_names():
        top = [p for p in policies.values() if re.search(p["pattern"], queue)]
        if len(top) > 1 and len({p["priority"] for p in top}) < len(top):
            problems.append(f"{queue}: several policies of one priority match it (RabbitMQ applies one)")
    return problems


# Server settings the operators own: not for the manifests to set.
CNPG_OWNED = {"listen_addresses", "port", "unix_socket_directories", "log_destination", "logging_collector",
              "log_directory", "log_filename", "shared_preload_libraries", "full_page_writes", "archive_mode",
              "archive_command", "restore_command", "hot_standby", "synchronous_standby_names", "ssl",
              "ssl_cert_file", "ssl_key_file", "ssl_ca_file", "primary_conninfo", "data_directory", "hba_file",
              "ident_file", "config_file", "cluster_name", "wal_level", "wal_log_hints"}
REQUIRED_RABBITMQ = {"consumer_timeout", "heartbeat", "max_message_size"}


def check_servers_match_compose(resources: list[Resource]) -> list[str]:
    """The operators' servers are tuned like the compose file's (deploy/postgres, deploy/rabbitmq)."""
    problems = []
    conf = conf_values(POSTGRESQL_CONF)
    for cluster in of_kind(resources, "Cluster"):
        parameters = cluster["spec"]["postgresql"]["parameters"]
        problems += [f"Cluster: {k} is the operator's to set" for k in parameters if k in CNPG_OWNED]
        problems += [f"Cluster: {k} = {v!r}, deploy/postgres/postgresql.conf has {conf[k]!r}"
                     for k, v in parameters.items() if k in conf and str(v) != conf[k]]
        if cluster["spec"]["instances"] != 3:
            problems.append("Cluster: 3 instances (one primary, two synchronous candidates)")
    rabbit_conf = conf_values(RABBITMQ_CONF)
    for cluster in of_kind(resources, "RabbitmqCluster"):
        extra = {k.strip(): v.strip() for k, v in (line.split("=", 1) for line in
                 cluster["spec"].get("rabbitmq", {}).get("additionalConfig", "").splitlines() if "=" in line)}
        problems += [f"RabbitmqCluster: {k} = {v}, deploy/rabbitmq/rabbitmq.conf has {rabbit_conf[k]}"
                     for k, v in extra.items() if k in rabbit_conf and v != rabbit_conf[k]]
        problems += [f"RabbitmqCluster: additionalConfig lacks {k}" for k in sorted(REQUIRED_RABBITMQ - set(extra))]
        if cluster["spec"]["replicas"] != 3:
            problems.append("RabbitmqCluster: 3 replicas (quorum queues keep a majority with one node down)")
        if not re.fullmatch(r"rabbitmq:(3\.13|4\.\d+)(\.\d+)?-management", cluster["spec"]["image"]):
            problems.append(f"RabbitmqCluster: {cluster['spec']['image']} is not a supported "
                            "rabbitmq:3.13/4.x-management")
    return problems


def check_database_logins(resources: list[Resource]) -> list[str]:
    """Workers log in as the worker login, migrations as the deploy login (docs/security.md),
    each with its own password Secret, at the Cluster's primary; the roles the logins join exist."""
    problems = []
    cluster = of_kind(resources, "Cluster")[0]
    spec = cluster["spec"]
    initdb = spec["bootstrap"]["initdb"]
    logins = {initdb["owner"]: initdb["secret"]["name"]}
    logins |= {r["name"]: r["passwordSecret"]["name"] for r in spec.get("managed", {}).get("roles", [])}
    worker_logins = {r["name"] for r in spec.get("managed", {}).get("roles", [])
                     if "conveyor_worker" in r.get("inRoles", [])}
    sql = " ".join(initdb.get("postInitApplicationSQL", []))
    created = set(re.findall(r"CREATE ROLE (\w+)", sql))
    v005_roles = set(re.findall(r"'(conveyor_\w+)'", V005.read_text().split("LOOP", 1)[0]))
    if not created <= v005_roles:
        problems.append(f"postInitApplicationSQL creates roles V005 does not: {sorted(created - v005_roles)}")
    if not re.search(rf"ALTER ROLE {initdb['owner']} CREATEROLE", sql):
        problems.append("the deploy login needs CREATEROLE for V005")
    for login, secret_name in logins.items():  # CloudNativePG wants the Secret's username to be the role
        username = (named(resources, "Secret", secret_name) or {}).get("stringData", {}).get("username")
        if username not in (None, login):
            problems.append(f"Secret {secret_name}: username {username!r} is not the login {login}")
    for role in spec.get("managed", {}).get("roles", []):
        problems += [f"managed role {role['name']}: role {r} does not exist before the first migration"
                     for r in role.get("inRoles", []) if r not in created and not r.startswith("pg_")]
    for resource, _, container in conveyor_containers(resources):
        env = env_of(resources, container)
        url = env.get("CONVEYOR_DATABASE_URL")
        if not isinstance(url, str):
            continue
        who = f"{resource['kind']}/{resource['metadata']['name']}"
        parts = url_parts(url)
        if parts.hostname != f"{cluster['metadata']['name']}-rw" or parts.path.lstrip("/") != initdb["database"]:
            problems.append(f"{who}: {url} is not the primary's Service and database")
        if parts.password:
            problems.append(f"{who}: a password in CONVEYOR_DATABASE_URL (use PGPASSWORD from the Secret)")
        password = env.get("PGPASSWORD")
        if parts.username not in logins or password != ("secret", logins.get(parts.username), "password"):
            problems.append(f"{who}: login {parts.username} must take PGPASSWORD from its own Secret")
        migrates = "migrate" in container.get("args", [])
        if migrates and parts.username != initdb["owner"]:
            problems.append(f"{who}: migrations run as the deploy login {initdb['owner']}")
        if not migrates and parts.username not in worker_logins:
            problems.append(f"{who}: `conveyor run` logs in as a conveyor_worker login, not {parts.username}")
    return problems


def check_broker_addresses(resources: list[Resource]) -> list[str]:
    problems = []
    broker = of_kind(resources, "RabbitmqCluster")[0]["metadata"]["name"]
    for resource, _, container in conveyor_containers(resources):
        env = env_of(resources, container)
        management = env.get("CONVEYOR_MANAGEMENT_URL")
        if isinstance(management, str) and (url_parts(management).hostname,
                                            url_parts(management).port) != (broker, 15672):
            problems.append(f"{resource['metadata']['name']}: CONVEYOR_MANAGEMENT_URL is not {broker}:15672")
        amqp = env.get("CONVEYOR_AMQP_URL")
        if isinstance(amqp, tuple):
            secret = named(resources, "Secret", amqp[1]) or {}
            url = secret.get("stringData", {}).get(amqp[2], "")
            parts = url_parts(url)
            data = secret.get("stringData", {})
            if (parts.hostname, parts.port) != (broker, 5672) or (parts.username, parts.password) != \
                    (data.get("username"), data.get("password")):
                problems.append(f"{resource['metadata']['name']}: {amqp[1]}.url must be {broker}:5672 "
                                "with the Secret's own username and password")
    return problems


CONNECTIONS_PER_POD = 6  # its pool (2), one per consuming worker, the periodic services, safe start
RESERVED_CONNECTIONS = 10  # the operator's instance manager, exporter, `conveyor` commands, migrate


def check_database_connections(resources: list[Resource]) -> list[str]:
    maxima = {s["spec"]["scaleTargetRef"]["name"]: s["spec"]["maxReplicaCount"]
              for s in of_kind(resources, "ScaledObject")}
    pods = sum(maxima.get(d["metadata"]["name"], d["spec"].get("replicas", 1))
               for d in of_kind(resources, "Deployment"))
    parameters = of_kind(resources, "Cluster")[0]["spec"]["postgresql"]["parameters"]
    room = int(parameters["max_connections"]) - int(parameters.get("superuser_reserved_connections", 3))
    needed = pods * CONNECTIONS_PER_POD + RESERVED_CONNECTIONS
    return [] if needed <= room else [
        f"{pods} pods at most x {CONNECTIONS_PER_POD} connections + {RESERVED_CONNECTIONS} = {needed} > {room} "
        "the database allows: lower maxReplicaCount or put PgBouncer in front"]


def check_pii_key_file(resources: list[Resource]) -> list[str]:
    """The orders worker (the one that seals customers' data) reads the key file from the PII
    Secret mounted where CONVEYOR_PII_KEY_FILE points; no other pod mounts that Secret."""
    problems = []
    pii_secrets = {n for _, n, _ in secret_references(resources) if n.endswith("pii-keys")}
    for deployment in of_kind(resources, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        container = spec["containers"][0]
        path = env_of(resources, container).get("CONVEYOR_PII_KEY_FILE")
        mounted = {v["name"]: v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        pii_mounts = {m["mountPath"]: mounted[m["name"]] for m in container.get("volumeMounts", [])
                      if mounted.get(m["name"]) in pii_secrets}
        where = f"Deployment/{deployment['metadata']['name']}"
        if role_of(deployment) != "orders":
            if path or pii_mounts:
                problems.append(f"{where}: only the orders worker needs the PII key file")
            continue
        if not isinstance(path, str):
            problems.append(f"{where}: CONVEYOR_PII_KEY_FILE is not set")
            continue
        directory, _, filename = path.rpartition("/")
        secret = named(resources, "Secret", pii_mounts.get(directory, ""))
        if secret is None or filename not in secret_keys(secret):
            problems.append(f"{where}: {path} is not a key of the PII Secret mounted at {directory}")
            continue
        volume = next(v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == pii_mounts[directory])
        if volume["secret"].get("defaultMode", 0o644) & 0o077:
            problems.append(f"{where}: the key file must not be readable by others (defaultMode 0400)")
    return problems


def check_containers_hardened(resources: list[Resource]) -> list[str]:
    problems = []
    for resource, spec, container in conveyor_containers(resources):
        where = f"{resource['kind']}/{resource['metadata']['name']}"
        resources_ = container.get("resources", {})
        if not {"cpu", "memory"} <= set(resources_.get("requests", {})) or "memory" not in resources_.get("limits", {}):
            problems.append(f"{where}: needs cpu and memory requests and a memory limit")
        context = container.get("securityContext", {})
        if context.get("allowPrivilegeEscalation") is not False or context.get("readOnlyRootFilesystem") is not True \
                or context.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{where}: container must drop ALL, read-only root, no privilege escalation")
        pod = spec.get("securityContext", {})
        if pod.get("runAsNonRoot") is not True or pod.get("runAsUser") != 10001:
            problems.append(f"{where}: runs as the image's user 10001, non-root")
    return problems


def check_example_overlay(resources: list[Resource]) -> list[str]:
    """A real image, one namespace, and placeholders marked as such."""
    problems = []
    images = {c["image"] for _, _, c in conveyor_containers(resources)}
    if len(images) != 1 or any("/" not in i or i.endswith((":latest", ":local")) or ":" not in i.split("/")[-1]
                               for i in images):
        problems.append(f"Conveyor containers must share one registry image with a release tag: {sorted(images)}")
    namespaces = {r["metadata"].get("namespace") for r in resources if r["kind"] not in CLUSTER_SCOPED}
    if len(namespaces) != 1 or None in namespaces:
        problems.append(f"every namespaced resource in one namespace, found {namespaces}")
    problems += [f"Secret/{s['metadata']['name']}: not marked as a placeholder" for s in of_kind(resources, "Secret")
                 if s["metadata"].get("annotations", {}).get("conveyor.example/placeholder") != "true"]
    return problems


CHECKS: list[Callable[[list[Resource]], list[str]]] = [
    check_every_kind_is_checked, check_custom_resources, check_env_names_are_settings, check_settings_values_load,
    check_roles_have_deployments, check_probes, check_grace_periods, check_disruption_budgets, check_scaled_objects,
    check_migrations, check_references, check_metrics_services, check_rabbitmq_policies, check_servers_match_compose,
    check_database_logins, check_broker_addresses, check_database_connections, check_pii_key_file,
    check_containers_hardened, check_example_overlay,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_example_overlay_passes(example: list[Resource], check: Callable[[list[Resource]], list[str]]) -> None:
    assert check(example) == []


# --- each check can fail ---------------------------------------------------------------------------


def _deployment(resources: list[Resource], role: str) -> Resource:
    return next(d for d in of_kind(resources, "Deployment") if role_of(d) == role)


def _container(resources: list[Resource], role: str) -> dict:
    return _deployment(resources, role)["spec"]["template"]["spec"]["containers"][0]


def _set_env(resources: list[Resource], role: str, name: str, value: str) -> None:
    _container(resources, role)["env"].append({"name": name, "value": value})


def _scaled(resources: list[Resource], role: str) -> dict:
    return next(s["spec"] for s in of_kind(resources, "ScaledObject")
                if s["spec"]["scaleTargetRef"]["name"] == _deployment(resources, role)["metadata"]["name"])


def _policy(resources: list[Resource], name: str) -> dict:
    return next(p["spec"] for p in of_kind(resources, "Policy") if p["spec"]["name"] == name)


def _cluster(resources: list[Resource]) -> dict:
    return of_kind(resources, "Cluster")[0]["spec"]


def _drop(resources: list[Resource], kind: str, name: str) -> None:
    resources.remove(next(r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name))


MUTATIONS: list[tuple[str, Callable[[list[Resource]], Any], Callable[[list[Resource]], list[str]], str]] = [
    ("unchecked kind", lambda r: r.append({"apiVersion": "example.com/v1", "kind": "Widget",
                                           "metadata": {"name": "w"}}), check_every_kind_is_checked, "Widget"),
    ("scaled object without target", lambda r: _scaled(r, "orders").pop("scaleTargetRef"),
     check_custom_resources, "scaleTargetRef"),
    ("numeric trigger metadata", lambda r: _scaled(r, "orders")["triggers"][0]["metadata"].update(value=1000),
     check_custom_resources, "must be a string"),
    ("policy without definition", lambda r: _policy(r, "conveyor-dlq-keep").pop("definition"),
     check_custom_resources, "spec.definition"),
    ("unknown applyTo", lambda r: _policy(r, "conveyor-dlq-keep").update(applyTo="queue"),
     check_custom_resources, "applyTo"),
    ("numeric postgres parameter", lambda r: _cluster(r)["postgresql"]["parameters"].update(max_connections=200),
     check_custom_resources, "max_connections"),
    ("five-field backup schedule", lambda r: of_kind(r, "ScheduledBackup")[0]["spec"].update(schedule="0 3 * * *"),
     check_custom_resources, "six cron fields"),
    ("synchronous number too high", lambda r: _cluster(r)["postgresql"]["synchronous"].update(number=3),
     check_custom_resources, "synchronous.number"),
    ("misspelt setting in env", lambda r: _set_env(r, "payments", "CONVEYOR_PREFECH", "10"),
     check_env_names_are_settings, "CONVEYOR_PREFECH"),
    ("misspelt setting in ConfigMap", lambda r: the(r, "ConfigMap", "conveyor-config")["data"].update(
        CONVEYOR_LOGFORMAT="json"), check_env_names_are_settings, "CONVEYOR_LOGFORMAT"),
    ("bad setting value", lambda r: the(r, "ConfigMap", "conveyor-config")["data"].update(
        CONVEYOR_LOG_FORMAT="yaml"), check_settings_values_load, "CONVEYOR_LOG_FORMAT"),
    ("role without deployment", lambda r: _drop(r, "Deployment", _deployment(r, "expirer")["metadata"]["name"]),
     check_roles_have_deployments, "expirer"),
    ("two roles in one pod", lambda r: _container(r, "relay").update(args=["run", "relay", "expirer"]),
     check_roles_have_deployments, "single role"),
    ("probe on another port", lambda r: the(r, "ConfigMap", "conveyor-config")["data"].update(
        CONVEYOR_HTTP_PORT="9400"), check_probes, "CONVEYOR_HTTP_PORT is 9400"),
    ("readiness on /healthz", lambda r: _container(r, "orders")["readinessProbe"]["httpGet"].update(path="/healthz"),
     check_probes, "/readyz"),
    ("grace period of the default", lambda r: _deployment(r, "shipments")["spec"]["template"]["spec"].update(
        terminationGracePeriodSeconds=30), check_grace_periods, "not longer"),
    ("longer statements", lambda r: the(r, "ConfigMap", "conveyor-config")["data"].update(
        CONVEYOR_STATEMENT_TIMEOUT_MS="60000"), check_grace_periods, "240 s"),
    ("no budget", lambda r: _drop(r, "PodDisruptionBudget", _deployment(r, "relay")["metadata"]["name"]),
     check_disruption_budgets, "0 PodDisruptionBudgets"),
    ("overlapping budget", lambda r: r.append({**copy.deepcopy(of_kind(r, "PodDisruptionBudget")[0]),
                                               "metadata": {"name": "all"}, "spec": {"maxUnavailable": 1, "selector": {
                                                   "matchLabels": {"app.kubernetes.io/name": "conveyor"}}}}),
     check_disruption_budgets, "2 PodDisruptionBudgets"),
    ("scaled on a retry tier", lambda r: _scaled(r, "payments")["triggers"][0]["metadata"].update(
        queueName="conveyor.payments.retry.5s"), check_scaled_objects, "queueName"),
    ("scaled on a queue nobody declares", lambda r: _scaled(r, "orders")["triggers"][0]["metadata"].update(
        queueName="orders"), check_scaled_objects, "queueName"),
    ("scale to zero", lambda r: _scaled(r, "shipments").update(minReplicaCount=0), check_scaled_objects,
     "minReplicaCount"),
    ("replicas beside KEDA", lambda r: _deployment(r, "orders")["spec"].update(replicas=2), check_scaled_objects,
     "HPA owns"),
    ("consumer without ScaledObject",
     lambda r: _drop(r, "ScaledObject", _deployment(r, "payments")["metadata"]["name"]),
     check_scaled_objects, "0 ScaledObjects"),
    ("migrate job runs the contract", lambda r: _container_of_job(r, "migrate").update(
        args=["db", "migrate", "--contract"]), check_migrations, "Jobs run `conveyor db migrate`"),
    ("contract not suspended", lambda r: of_kind(r, "CronJob")[0]["spec"].update(suspend=False), check_migrations,
     "suspended"),
    ("missing secret", lambda r: _drop(r, "Secret", "conveyor-db-app"), check_references, "conveyor-db-app"),
    ("missing secret key", lambda r: the(r, "Secret", "conveyor-amqp")["stringData"].pop("url"), check_references,
     "no key url"),
    ("backup of another cluster", lambda r: of_kind(r, "ScheduledBackup")[0]["spec"]["cluster"].update(name="db"),
     check_references, "names no Cluster"),
    ("unscraped role", lambda r: _drop(r, "Service", _deployment(r, "expirer")["metadata"]["name"]),
     check_metrics_services, "expirer"),
    ("bound differs from Conveyor's", lambda r: the(r, "ConfigMap", "conveyor-config")["data"].update(
        CONVEYOR_QUEUE_MAX_LENGTH="5000"), check_rabbitmq_policies, "differs"),
    ("bound on the DLQs", lambda r: _policy(r, "conveyor-inbound-bound").update(pattern="^conveyor\\."),
     check_rabbitmq_policies, "differs"),
    ("DLQs with a delivery limit", lambda r: _drop(r, "Policy", "conveyor-dlq-keep"), check_rabbitmq_policies,
     "delivery-limit -1"),
    ("postgres tuned unlike compose", lambda r: _cluster(r)["postgresql"]["parameters"].update(work_mem="64MB"),
     check_servers_match_compose, "work_mem"),
    ("operator-owned parameter", lambda r: _cluster(r)["postgresql"]["parameters"].update(port="5433"),
     check_servers_match_compose, "operator's"),
    ("rabbitmq without consumer_timeout", lambda r: of_kind(r, "RabbitmqCluster")[0]["spec"]["rabbitmq"].update(
        additionalConfig="heartbeat = 60\nmax_message_size = 16777216\n"), check_servers_match_compose,
     "consumer_timeout"),
    ("old rabbitmq", lambda r: of_kind(r, "RabbitmqCluster")[0]["spec"].update(image="rabbitmq:3.10-management"),
     check_servers_match_compose, "supported"),
    ("worker as the deploy login", lambda r: _set_env(
        r, "relay", "CONVEYOR_DATABASE_URL", "postgresql://conveyor_deploy@conveyor-db-rw:5432/conveyor"),
     check_database_logins, "conveyor_worker login"),
    ("password in the URL", lambda r: _set_env(
        r, "orders", "CONVEYOR_DATABASE_URL", "postgresql://conveyor_app:x@conveyor-db-rw:5432/conveyor"),
     check_database_logins, "PGPASSWORD"),
    ("worker role not created first", lambda r: _cluster(r)["bootstrap"]["initdb"].update(
        postInitApplicationSQL=["ALTER ROLE conveyor_deploy CREATEROLE"]), check_database_logins, "does not exist"),
    ("password Secret of another login", lambda r: the(r, "Secret", "conveyor-db-app")["stringData"].update(
        username="app"), check_database_logins, "is not the login conveyor_app"),
    ("management API elsewhere", lambda r: the(r, "ConfigMap", "conveyor-config")["data"].update(
        CONVEYOR_MANAGEMENT_URL="http://rabbitmq:15672"), check_broker_addresses, "15672"),
    ("AMQP URL with another password", lambda r: the(r, "Secret", "conveyor-amqp")["stringData"].update(
        url="amqp://conveyor:other@conveyor-rabbitmq:5672/%2F"), check_broker_addresses, "own username"),
    ("too many replicas for the database", lambda r: _scaled(r, "orders").update(maxReplicaCount=40),
     check_database_connections, "PgBouncer"),
    ("no PII key file", lambda r: _container(r, "orders")["env"].pop(
        next(i for i, e in enumerate(_container(r, "orders")["env"]) if e["name"] == "CONVEYOR_PII_KEY_FILE")),
     check_pii_key_file, "not set"),
    ("PII key file elsewhere", lambda r: _set_env(r, "orders", "CONVEYOR_PII_KEY_FILE", "/etc/conveyor/keys.json"),
     check_pii_key_file, "not a key"),
    ("world-readable key file",
     lambda r: next(v for v in _deployment(r, "orders")["spec"]["template"]["spec"]["volumes"]
                    if "secret" in v)["secret"].update(defaultMode=0o444),
     check_pii_key_file, "defaultMode"),
    ("no memory limit", lambda r: _container(r, "payments")["resources"].pop("limits"), check_containers_hardened,
     "memory limit"),
    ("image left at local", lambda r: _container(r, "orders").update(image="conveyor:local"), check_example_overlay,
     "release tag"),
    ("unmarked secret", lambda r: the(r, "Secret", "conveyor-amqp")["metadata"].pop("annotations"),
     check_example_overlay, "placeholder"),
]


def _container_of_job(resources: list[Resource], component: str) -> dict:
    job = next(j for j in of_kind(resources, "Job")
               if j["metadata"]["labels"]["app.kubernetes.io/component"] == component)
    return job["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(("mutate", "check", "expected"), [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS])
def test_check_can_fail(example: list[Resource], mutate: Callable[[list[Resource]], Any],
                        check: Callable[[list[Resource]], list[str]], expected: str) -> None:
    broken = copy.deepcopy(example)
    mutate(broken)
    problems = check(broken)
    assert any(expected in problem for problem in problems), problems


def test_every_check_has_a_mutation() -> None:
    assert {m[2] for m in MUTATIONS} >= set(CHECKS)


# --- the base and the loader ---------------------------------------------------------------------


def test_base_is_namespace_agnostic_and_holds_no_secret(base: list[Resource]) -> None:
    """Applying the base never overwrites real credentials, and it fits any namespace."""
    assert of_kind(base, "Secret") == []
    assert [r["metadata"]["name"] for r in base if "namespace" in r["metadata"]] == []
    assert {c["image"] for _, _, c in conveyor_containers(base)} == {"conveyor:local"}


def test_overlay_changes_what_it_says(base: list[Resource], example: list[Resource]) -> None:
    assert _scaled(base, "orders")["maxReplicaCount"] == 10 and _scaled(example, "orders")["maxReplicaCount"] == 12
    assert _container(example, "orders")["resources"]["requests"]["cpu"] == "1"
    assert _cluster(example)["storage"]["size"] == "100Gi"
    assert _deployment(example, "relay")["spec"]["replicas"] == 2
    store = of_kind(example, "ObjectStore")[0]["spec"]["configuration"]
    assert store["endpointURL"] == "https://s3.example.com"
    assert {c["image"] for _, _, c in conveyor_containers(example)} == {"registry.example.com/conveyor:0.1.0"}
    assert {r["metadata"]["namespace"] for r in example if r["kind"] != "Namespace"} == {"conveyor"}


def test_loader_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namePrefix": "x-"}))
    with pytest.raises(KustomizeError, match="namePrefix"):
        build(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": [str(BASE)],
        "patches": [{"target": {"kind": "Deployment", "name": "nothing"}, "patch": "[]"}]}))
    with pytest.raises(KustomizeError, match="matches nothing"):
        build(tmp_path)


def test_json_patch() -> None:
    document: dict = {"a": {"b": [1, 2]}, "c~/d": 1}
    json_patch(document, {"op": "add", "path": "/a/b/-", "value": 3})
    json_patch(document, {"op": "replace", "path": "/a/b/0", "value": 0})
    json_patch(document, {"op": "remove", "path": "/c~0~1d"})
    json_patch(document, {"op": "add", "path": "/e", "value": {"f": 1}})
    assert document == {"a": {"b": [0, 2, 3]}, "e": {"f": 1}}
    with pytest.raises(KustomizeError):
        json_patch(document, {"op": "replace", "path": "/missing", "value": 1})


def test_grace_period_bound_follows_the_settings() -> None:
    """The bound the grace period is checked against moves with the settings it comes from."""
    default = Settings.model_fields
    assert longest_stop_seconds(load_settings(), "orders") == max(
        (default["local_retries"].default + 1) * default["statement_timeout_ms"].default / 1000,
        default["liveness_timeout"].default)
    assert longest_stop_seconds(load_settings(statement_timeout_ms=60_000), "orders") == 240
    assert math.isclose(longest_stop_seconds(load_settings(liveness_timeout=300), "relay"), 300)
