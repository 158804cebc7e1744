#!/usr/bin/env python3
"""Renders the Kubernetes manifests of the mqtt-keepalive agent from values.

Usage: python3 deploy/kubernetes/render.py [--values FILE]... > manifests.yaml

The defaults are deploy/kubernetes/values.yaml; each --values file overrides keys of it (a
shallow merge: a key given replaces the default whole). Output, one YAML stream:
  DaemonSet       one agent per node, host network, the backend's capabilities only
  Service         headless, port `metrics`, for discovery by endpoints
  PodMonitor      (prometheus-operator) scrapes every agent pod; job label = `name`
  PrometheusRule  (prometheus-operator) dashboards/alerts.yml + deploy/prometheus/fleet-rules.yml
  ConfigMap       dashboards/mqtt-keepalive.json, labelled for Grafana's dashboard sidecar
The rule and dashboard files are read from the repository, not copied, so they cannot drift.
deploy/kubernetes/mqtt-keepalive.yaml is this script's output for the defaults (tests/deploy.rs
checks it is current). Needs Python 3 and PyYAML only: renders offline.
"""

import argparse
import json
import pathlib
import sys

import yaml

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
BACKENDS = ("afpacket", "ebpf", "afpacket,ebpf", "ebpf,afpacket")

# Linux capabilities each backend needs, and nothing else (README "Run it on a fleet").
# afpacket: a packet socket (NET_RAW); NET_ADMIN lets it force a large socket buffer
#   (SO_RCVBUFFORCE) so bursts are not dropped.
# ebpf: loading BPF programs and maps (BPF), perf events and tracepoints (PERFMON), uprobes
#   through perf_event_open (SYS_ADMIN, required by current kernels), and reading the broker's
#   libssl through /proc/PID/root of a process of another user (SYS_PTRACE: mosquitto drops to
#   its own user). tests/container_e2e.rs runs the image with exactly these.
CAPABILITIES = {
    "afpacket": ["NET_RAW", "NET_ADMIN"],
    "ebpf": ["BPF", "PERFMON", "SYS_ADMIN", "SYS_PTRACE"],
}


class RenderError(Exception):
    pass


def load_values(paths):
    values = yaml.safe_load((HERE / "values.yaml").read_text())
    for path in paths:
        extra = yaml.safe_load(pathlib.Path(path).read_text()) or {}
        if not isinstance(extra, dict):
            raise RenderError(f"{path}: values must be a mapping")
        unknown = sorted(set(extra) - set(values))
        if unknown:
            raise RenderError(f"{path}: unknown values {', '.join(unknown)} (see deploy/kubernetes/values.yaml)")
        values.update(extra)
    if values["backend"] not in BACKENDS:
        raise RenderError(f"backend must be one of {', '.join(BACKENDS)}, not {values['backend']!r}")
    for key in ("ports", "ebpfPorts"):
        ports = values[key]
        if not isinstance(ports, list) or not all(isinstance(p, int) and 0 < p < 65536 for p in ports):
            raise RenderError(f"{key} must be a list of TCP ports, not {ports!r}")
    if not values["ports"]:
        raise RenderError("ports must name at least one broker port")
    return values


def labels(v):
    return {"app.kubernetes.io/name": v["name"], "app.kubernetes.io/component": "agent"}


def metadata(v, name=None, extra_labels=None):
    return {"name": name or v["name"], "namespace": v["namespace"], "labels": {**labels(v), **(extra_labels or {})}}


def agent_args(v):
    backends = v["backend"].split(",")
    args = ["live", "--backend", v["backend"]]
    if "afpacket" in backends:
        args += ["--interface", v["interface"]]
    for port in v["ports"]:
        args += ["--port", str(port)]
    if "ebpf" in backends:
        if v["process"]:
            args += ["--process", v["process"]]
        if "afpacket" in backends:
            for port in v["ebpfPorts"]:
                args += ["--ebpf-port", str(port)]
    args += ["--listen", f"0.0.0.0:{v['metricsPort']}", "--client-id-labels", str(v["clientIdLabels"])]
    return args + [str(a) for a in v["extraArgs"]]


def daemonset(v):
    backends = v["backend"].split(",")
    caps = [c for b in ("afpacket", "ebpf") if b in backends for c in CAPABILITIES[b]]
    container = {
        "name": "agent",
        "image": v["image"],
        "imagePullPolicy": v["imagePullPolicy"],
        "args": agent_args(v),
        "ports": [{"name": "metrics", "containerPort": v["metricsPort"], "hostPort": v["metricsPort"], "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10},
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "metrics"},
            "periodSeconds": 20,
            "failureThreshold": 3,
        },
        "resources": v["resources"],
        # uid 0 inside the container, but with every capability dropped except the backend's: a
        # non-root uid would not get them (Kubernetes grants no ambient capabilities).
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": False,
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": caps},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    spec = {
        # The node's network namespace: the agent sees the broker's traffic and serves /metrics
        # on the node's address.
        "hostNetwork": True,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 10,
        "containers": [container],
        "nodeSelector": {"kubernetes.io/os": "linux", **v["nodeSelector"]},
        "tolerations": v["tolerations"],
    }
    if "ebpf" in backends:
        # The node's PID namespace: --process finds the broker, /proc/PID/root its libssl. The
        # node's tracefs, read-only: the tracepoints' ids (a container's /sys has no tracefs).
        spec["hostPID"] = True
        spec["volumes"] = [{"name": "tracefs", "hostPath": {"path": "/sys/kernel/tracing", "type": "Directory"}}]
        container["volumeMounts"] = [{"name": "tracefs", "mountPath": "/sys/kernel/tracing", "readOnly": True}]
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": metadata(v),
        "spec": {
            "selector": {"matchLabels": labels(v)},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": {"labels": labels(v)}, "spec": spec},
        },
    }


def service(v):
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(v),
        "spec": {
            "clusterIP": "None",
            "selector": labels(v),
            "ports": [{"name": "metrics", "port": v["metricsPort"], "targetPort": "metrics", "protocol": "TCP"}],
        },
    }


def podmonitor(v):
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": metadata(v),
        "spec": {
            # job="<name>", as dashboards/alerts.yml's MqttKeepaliveAgentDown expects.
            "jobLabel": "app.kubernetes.io/name",
            "selector": {"matchLabels": labels(v)},
            "podMetricsEndpoints": [
                {
                    "port": "metrics",
                    "path": "/metrics",
                    "interval": v["scrapeInterval"],
                    # instance = the node, as with the systemd agents (host network: pod IP = node IP).
                    "relabelings": [
                        {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node", "action": "replace"}
                    ],
                }
            ],
        },
    }


def prometheusrule(v):
    groups = []
    for path in ("dashboards/alerts.yml", "deploy/prometheus/fleet-rules.yml"):
        groups += yaml.safe_load((REPO / path).read_text())["groups"]
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": metadata(v), "spec": {"groups": groups}}


def dashboard(v):
    text = (REPO / "dashboards/mqtt-keepalive.json").read_text()
    json.loads(text)  # a broken dashboard fails here, not in Grafana
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(v, f"{v['name']}-dashboard", {"grafana_dashboard": "1"}),
        "data": {"mqtt-keepalive.json": text},
    }


def render(v):
    docs = [daemonset(v), service(v)]
    if v["podMonitor"]:
        docs.append(podmonitor(v))
    if v["prometheusRule"]:
        docs.append(prometheusrule(v))
    if v["dashboardConfigMap"]:
        docs.append(dashboard(v))
    return docs


class Dumper(yaml.SafeDumper):
    pass


def _str(dumper, s):
    # Multi-line strings (PromQL, the dashboard) as literal blocks, readable in a diff.
    if "\n" in s and all(l == l.rstrip() for l in s.split("\n")):
        return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", s)


Dumper.add_representer(str, _str)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--values", action="append", default=[], metavar="FILE", help="values overriding values.yaml")
    args = parser.parse_args()
    try:
        docs = render(load_values(args.values))
    except (RenderError, OSError, yaml.YAMLError, json.JSONDecodeError) as e:
        print(f"render.py: {e}", file=sys.stderr)
        return 2
    sys.stdout.write("# Rendered by deploy/kubernetes/render.py")
    sys.stdout.write("".join(f" --values {p}" for p in args.values) + "; do not edit by hand.\n")
    sys.stdout.write(yaml.dump_all(docs, Dumper=Dumper, sort_keys=False, width=120, explicit_start=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
