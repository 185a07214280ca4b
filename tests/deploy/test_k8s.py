"""The Kubernetes example in deploy/k8s/ holds together: names, labels, probes and timeouts."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from service.settings import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"


@pytest.fixture(scope="module")
def objects() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert {"apiVersion", "kind", "metadata"} <= set(document), path
            found[document["kind"]] = document
    return found


def test_every_kind_is_there(objects: dict[str, dict[str, Any]]) -> None:
    expected = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    assert set(objects) == expected


def test_probes_and_termination_fit_the_drain(objects: dict[str, dict[str, Any]]) -> None:
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
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
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert container["ports"][0]["containerPort"] == 8000
