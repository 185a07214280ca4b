"""The Kubernetes examples hold together: valid against Kubernetes' own OpenAPI schemas
(``kubernetes-validate`` ships them, so no cluster or network is needed), and consistent in
names, labels, probes, timeouts, hardening, autoscaling (KEDA) and KServe's runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.settings import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
KEDA = K8S / "keda" / "scaledobject.yaml"
KSERVE = REPO_ROOT / "deploy" / "kserve"
# The Kubernetes release the schemas are checked against: the oldest one still supported
# upstream when this was written, so the manifests use nothing newer.
KUBERNETES_VERSION = "1.32"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_manifest_is_valid_against_the_openapi_schema(path: Path) -> None:
    for document in _documents(path):
        # strict: an unknown (misspelt) field is an error, as `kubectl apply --validate=strict`.
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_validator_catches_a_misspelt_field() -> None:
    (deployment,) = _documents(K8S / "deployment.yaml")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["timeoutSecond"] = 3
    with pytest.raises(kubernetes_validate.ValidationError, match="timeoutSecond"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_pod_is_hardened(objects: dict[str, dict[str, Any]]) -> None:
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    # The one writable place, where multipart uploads spill (as the container test mounts it).
    writable = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
    assert writable == ["/tmp"]
    # A probe that times out after the default 1 s flaps under load.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["timeoutSeconds"] >= 3, probe
    assert container["readinessProbe"]["failureThreshold"] >= 2


def test_network_policy_selects_the_pods_and_closes_egress(
    objects: dict[str, dict[str, Any]],
) -> None:
    policy = objects["NetworkPolicy"]["spec"]
    labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert policy["egress"] == []
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]


def test_keda_scales_the_deployment_on_the_services_queue_depth(
    objects: dict[str, dict[str, Any]],
) -> None:
    from service.metrics import Metrics

    (scaled,) = _documents(KEDA)
    assert (scaled["apiVersion"], scaled["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "mmserve")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    # The metric the query reads is one the service really exports (and is a gauge).
    exported = {m.name: m.type for m in Metrics().registry.collect()}
    assert exported["mmserve_queue_depth"] == "gauge"
    assert "mmserve_queue_depth" in trigger["metadata"]["query"]
    assert float(trigger["metadata"]["threshold"]) > 0


@pytest.fixture(scope="module")
def objects() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert {"apiVersion", "kind", "metadata"} <= set(document), path
            found[document["kind"]] = document
    return found


def test_every_kind_is_there(objects: dict[str, dict[str, Any]]) -> None:
    expected = {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"}
    assert set(objects) == expected


def test_probes_and_termination_fit_the_drain(objects: dict[str, dict[str, Any]]) -> None:
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    drain_s = float(env["MMSERVE_SHUTDOWN_GRACE_S"]) + float(env["MMSERVE_DRAIN_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] > drain_s
    assert env["MMSERVE_WORKERS"] == "1"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    # A draining pod is unready on purpose: liveness must not restart it for that.
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_service_and_autoscaler_point_at_the_deployment(
    objects: dict[str, dict[str, Any]],
) -> None:
    deployment = objects["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert objects["Service"]["spec"]["selector"].items() <= labels.items()
    budget = objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    assert budget.items() <= labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    port_names = {p["name"] for p in container["ports"]}
    assert objects["Service"]["spec"]["ports"][0]["targetPort"] in port_names
    assert container["ports"][0]["containerPort"] == 8000


def test_kserve_runtime_serves_the_inference_service() -> None:
    (runtime,) = _documents(KSERVE / "servingruntime.yaml")
    (service,) = _documents(KSERVE / "inferenceservice.yaml")
    assert runtime["kind"] == "ServingRuntime" and service["kind"] == "InferenceService"
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"] == ["v2"]
    # The runtime's containers are core Containers: hold them to the Pod schema.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "mmserve"},
        "spec": {"containers": runtime["spec"]["containers"]},
    }
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    (container,) = runtime["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    # KServe's storage initializer puts the model at /mnt/models and routes to port 8080.
    assert env["MMSERVE_MODEL_DIR"] == "/mnt/models"
    assert env["MMSERVE_PORT"] == str(container["ports"][0]["containerPort"]) == "8080"


def test_the_pods_bind_publicly_so_they_get_api_keys(objects: dict[str, dict[str, Any]]) -> None:
    # The image binds 0.0.0.0, where the service refuses to start without a key (README, Security).
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    keys_file = env["MMSERVE_API_KEYS_FILE"]["value"]
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    secret = next(v for v in pod["volumes"] if "secret" in v)
    assert mounts[secret["name"]]["readOnly"] is True
    assert keys_file.startswith(mounts[secret["name"]]["mountPath"] + "/")
    runtime = yaml.safe_load((REPO_ROOT / "deploy/kserve/servingruntime.yaml").read_text())
    kserve_env = {e["name"]: e for e in runtime["spec"]["containers"][0]["env"]}
    assert "secretKeyRef" in kserve_env["MMSERVE_API_KEYS"]["valueFrom"]
