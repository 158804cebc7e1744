#!/usr/bin/env python3
"""Validates rendered Kubernetes manifests offline, strictly (unknown fields are errors).

Usage: python3 deploy/kubernetes/validate.py [-k VERSION]... FILE...   (FILE `-`: standard input)

Built-in kinds (DaemonSet, Service, ConfigMap, ...) are checked against the Kubernetes OpenAPI
schemas that the PyPI package kubernetes-validate ships (`pip install kubernetes-validate`), for
each -k version (default: the oldest and the newest it has). The prometheus-operator kinds
(PodMonitor, PrometheusRule) are checked against their CRDs' openAPIV3Schema, kept in
deploy/kubernetes/schemas/ (from prometheus-operator's CRDs, monitoring.coreos.com/v1), with
jsonschema, made strict the way the API server's strict field validation is: an object schema
with `properties` and neither `additionalProperties` nor x-kubernetes-preserve-unknown-fields
accepts no other field. Not checked: admission (PodSecurity, quotas), whether the CRDs are
installed, and anything a running cluster decides. Exit 0 when every document is valid, 1 with
one line per problem otherwise, 2 on unreadable input.
"""

import argparse
import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

HERE = pathlib.Path(__file__).resolve().parent
SCHEMAS = {}
for path in sorted((HERE / "schemas").glob("*.json")):
    doc = json.loads(path.read_text())
    SCHEMAS[(doc["apiVersion"], doc["kind"])] = doc["schema"]


def strict(schema):
    """The CRD schema with unknown fields rejected, as `kubectl apply --validate=strict` does."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        if schema.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        return out
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    return schema


def validate_crd(doc):
    schema = SCHEMAS[(doc["apiVersion"], doc["kind"])]
    # metadata is the API server's ObjectMeta, not part of the CRD schema: check it as a
    # built-in kind's (a ConfigMap's) metadata would be.
    meta = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc.get("metadata", {})}
    problems = []
    try:
        kubernetes_validate.validate(meta, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as e:
        problems.append(f"metadata: {e.message}")
    body = {k: v for k, v in doc.items() if k != "metadata"}
    validator = jsonschema.Draft7Validator(strict(schema))
    for e in sorted(validator.iter_errors(body), key=lambda e: list(e.path)):
        problems.append(f"{'.'.join(str(p) for p in e.path) or '(root)'}: {e.message}")
    return problems


def validate_builtin(doc, version):
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {doc.get('apiVersion')} {doc.get('kind')} in Kubernetes {version}"]
    except kubernetes_validate.ValidationError as e:
        where = ".".join(str(p) for p in e.path) or "(root)"
        return [f"{where}: {e.message} (Kubernetes {version})"]
    return []


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-k", "--kubernetes-version", action="append", dest="versions")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    available = sorted(
        (p.name.split("-")[0].lstrip("v") for p in (pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema").glob("v*-local-strict")),
        key=lambda v: tuple(int(x) for x in v.split(".")),
    )
    versions = args.versions or [available[0], available[-1]]
    failed = 0
    checked = []
    for name in args.files:
        try:
            text = sys.stdin.read() if name == "-" else pathlib.Path(name).read_text()
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except (OSError, yaml.YAMLError) as e:
            print(f"{name}: {e}", file=sys.stderr)
            return 2
        for doc in docs:
            what = f"{name}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
            if (doc.get("apiVersion"), doc.get("kind")) in SCHEMAS:
                problems = validate_crd(doc)
            else:
                problems = [p for v in versions for p in validate_builtin(doc, v)]
            for p in problems:
                print(f"{what}: {p}")
            failed += bool(problems)
            checked.append(f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}")
    print(f"validated {len(checked)} documents (Kubernetes {', '.join(versions)}; CRDs {', '.join(k for _, k in SCHEMAS)}): {', '.join(checked)}")
    print(f"{len(checked) - failed} valid, {failed} invalid")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
