#!/usr/bin/env bash
# Offline validation of the deploy files (no cluster, no Docker daemon, no network):
#   kubectl kustomize deploy/k8s   renders, and every object has apiVersion/kind/metadata.name
#   yamllint (relaxed)             on deploy/ and docker-compose.yml
#   docker-compose config -q       on docker-compose.yml
#   the Grafana dashboard          parses as JSON, with panels and a title
#   the Dockerfiles                have a FROM; the worker's base is an NVIDIA CUDA image
# Each check runs when its tool is installed and is reported as SKIP otherwise. Exit status:
# 0 all run checks passed; 1 a check failed; 77 (ctest's skip code) none of kubectl,
# yamllint, docker-compose is installed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ran=0
failed=0
pass() { echo "PASS $1"; ran=$((ran + 1)); }
fail() { echo "FAIL $1"; ran=$((ran + 1)); failed=1; }
skip() { echo "SKIP $1"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if command -v kubectl >/dev/null 2>&1; then
  if kubectl kustomize deploy/k8s >"$tmp/k8s.yaml" 2>"$tmp/k8s.err"; then
    if command -v python3 >/dev/null 2>&1 && python3 -c 'import yaml' 2>/dev/null; then
      if python3 - "$tmp/k8s.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = {}
for d in docs:
    for f in ("apiVersion", "kind"):
        assert f in d, f"object without {f}: {d}"
    assert d.get("metadata", {}).get("name"), f"{d['kind']} without metadata.name"
    kinds.setdefault(d["kind"], []).append(d)
for k in ("StatefulSet", "Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap"):
    assert k in kinds, f"kustomize output has no {k}"
hpa = kinds["HorizontalPodAutoscaler"][0]
assert hpa["apiVersion"] == "autoscaling/v2", hpa["apiVersion"]
assert any(m["type"] in ("External", "Pods") for m in hpa["spec"]["metrics"])
worker = [d for d in kinds["Deployment"] if d["metadata"]["name"] == "impq-worker"][0]
res = worker["spec"]["template"]["spec"]["containers"][0]["resources"]
assert res["limits"]["nvidia.com/gpu"], "worker has no nvidia.com/gpu limit"
args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
assert "--device=gpu" in args, f"worker holds a GPU but does not insist on it: {args}"
print(f"  {len(docs)} objects: " + ", ".join(f"{k} x{len(v)}" for k, v in sorted(kinds.items())))
PY
      then pass "kubectl kustomize deploy/k8s (+ structure)"; else fail "kustomize output structure"; fi
    else
      pass "kubectl kustomize deploy/k8s (python3-yaml absent: structure not checked)"
    fi
  else
    cat "$tmp/k8s.err"
    fail "kubectl kustomize deploy/k8s"
  fi
else
  skip "kubectl kustomize (kubectl not installed)"
fi

if command -v yamllint >/dev/null 2>&1; then
  # relaxed: style nits (line length, flow mappings) are not errors.
  if yamllint -d '{extends: relaxed, rules: {line-length: disable}}' deploy docker-compose.yml; then
    pass "yamllint deploy docker-compose.yml"
  else
    fail "yamllint"
  fi
else
  skip "yamllint (not installed)"
fi

if command -v docker-compose >/dev/null 2>&1; then
  if docker-compose -f docker-compose.yml config -q; then pass "docker-compose config -q"; else fail "docker-compose config -q"; fi
else
  skip "docker-compose config (not installed)"
fi

if command -v python3 >/dev/null 2>&1; then
  if python3 - deploy/k8s/dashboards/impq.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d.get("title") and d.get("panels"), "dashboard needs a title and panels"
exprs = " ".join(t["expr"] for p in d["panels"] for t in p.get("targets", []))
for m in ("impq_coordinator_evaluations_total", "impq_coordinator_evaluation_seconds_bucket",
          "impq_coordinator_leases_expired_total", "impq_coordinator_workers_connected",
          "impq_coordinator_jobs"):
    assert m in exprs, f"dashboard has no panel on {m}"
print(f"  {len(d['panels'])} panels")
PY
  then pass "Grafana dashboard JSON"; else fail "Grafana dashboard JSON"; fi
else
  skip "dashboard JSON (python3 not installed)"
fi

tool_checks=$ran
for f in deploy/coordinator.Dockerfile deploy/worker.Dockerfile; do
  if grep -q '^FROM ' "$f"; then pass "$f has FROM"; else fail "$f has no FROM"; fi
done
if grep -q '^FROM nvidia/cuda:' deploy/worker.Dockerfile; then
  pass "worker image on an NVIDIA CUDA base"
else
  fail "worker image is not on an NVIDIA CUDA base"
fi

if [ "$failed" -eq 0 ] && [ "$tool_checks" -eq 0 ]; then
  echo "no validation tool installed (kubectl, yamllint, docker-compose): skipped"
  exit 77
fi
exit "$failed"
