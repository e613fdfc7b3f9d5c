"""The fleet deployment in deploy/: the Kubernetes manifests pass the offline schema check (the one
.ci/run runs), the check catches what it should, and the manifests agree with the code they run:
the container's arguments are `acfd serve` flags, the probes poll its health endpoints on the
health port, the Service and the autoscaler point at what exists. (That the autoscaler's metric is
made from series the real server publishes: tests/serving/test_fleet.py.)"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from file_modules import load_file

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _validator():
    return load_file(DEPLOY / "validate.py", "acfd_deploy_validate")


def _resources() -> list[dict]:
    return [d for path in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]


def _by_kind(kind: str) -> list[dict]:
    return [r for r in _resources() if r["kind"] == kind]


def test_manifests_pass_the_offline_schema_check():
    results = _validator().validate_folder(DEPLOY / "k8s")
    assert {name.split(": ", 1)[1].split("/")[0] for name, _ in results} >= {
        "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap"
    }  # fmt: skip
    assert [(name, problem) for name, problem in results if problem] == []


def test_the_check_rejects_a_misspelt_field_and_an_unknown_kind(tmp_path):
    good = (DEPLOY / "k8s" / "pdb.yaml").read_text()
    (tmp_path / "typo.yaml").write_text(good.replace("minAvailable", "minAvailible"))
    (tmp_path / "kind.yaml").write_text(good.replace("kind: PodDisruptionBudget", "kind: PodDisruptionBudgett"))
    (tmp_path / "broken.yaml").write_text("apiVersion: v1\nkind: [unclosed\n")
    problems = {Path(name.split(":")[0]).name: problem for name, problem in _validator().validate_folder(tmp_path)}
    assert "minAvailible" in problems["typo.yaml"]
    assert "no schema for policy/v1 PodDisruptionBudgett" in problems["kind.yaml"]
    assert problems["broken.yaml"].startswith("not valid YAML")
    assert _validator().main([str(tmp_path)]) == 1


def test_containers_run_acfd_serve_and_probe_its_health_endpoints():
    from acfd.serving import serve_cli

    deployments = _by_kind("Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {"acfd-cpu", "acfd-gpu"}
    for deployment in deployments:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        parser = argparse.ArgumentParser()
        serve_cli.add_arguments(parser)
        args = parser.parse_args(container["args"])  # every flag is one `acfd serve` knows
        assert args.host == "0.0.0.0" and not args.no_watchdog
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": args.http_port, "grpc": args.grpc_port, "metrics": args.metrics_port,
                         "health": args.health_port}  # fmt: skip
        probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
        assert probes["readinessProbe"] == {"path": "/health/ready", "port": "health"}
        assert probes["startupProbe"] == {"path": "/health/ready", "port": "health"}
        assert probes["livenessProbe"] == {"path": "/health/live", "port": "health"}
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        for service in _by_kind("Service"):  # both services reach every pod, CPU and GPU
            assert service["spec"]["selector"].items() <= pod_labels.items()
            assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)


def test_the_autoscaler_scales_a_deployment_on_the_adapters_metric():
    (hpa,) = _by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] in {d["metadata"]["name"] for d in _by_kind("Deployment")}
    (adapter,) = _by_kind("ConfigMap")
    (rule,) = yaml.safe_load(adapter["data"]["config.yaml"])["rules"]
    metric = next(m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods")
    assert rule["name"]["as"] == metric
