#!/usr/bin/env bash
# Offline validation of the deploy files (no cluster, no Docker daemon, no network):
#   kubectl kustomize deploy/k8s   renders, and every object has apiVersion/kind/metadata.name
#   yamllint (relaxed)             on deploy/ and docker-compose.yml
#   docker-compose config -q       on docker-compose.yml
#   the Grafana dashboard          parses as JSON, with panels and a title
#   the Dockerfiles                have a FROM, run as a non-root USER, put no token on argv;
#                                  the worker's base is an NVIDIA CUDA image
#   issue 20's invariants          k8s: non-root read-only containers, NetworkPolicies, Secret
#                                  keys in secret.example.yaml, secure coordinator flags,
#                                  mTLS-safe probes; compose: non-root, 127.0.0.1 ports, secrets
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
      # Issue 20's invariants: non-root read-only containers, NetworkPolicies, no token on
      # argv, every Secret key a pod reads listed in the template, secure coordinator flags,
      # probes that do not speak plaintext gRPC to the mutual-TLS port.
      if python3 - "$tmp/k8s.yaml" deploy/k8s/secret.example.yaml <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
template = {d["metadata"]["name"]: set((d.get("stringData") or {}) | (d.get("data") or {}))
            for d in yaml.safe_load_all(open(sys.argv[2])) if d and d.get("kind") == "Secret"}
assert not any(d["kind"] == "Secret" for d in docs), "a Secret is rendered: tokens belong in files"
pods = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")]
assert pods, "no workload"
for w in pods:
    name = w["metadata"]["name"]
    spec = w["spec"]["template"]["spec"]
    psc = spec.get("securityContext") or {}
    for c in spec.get("initContainers", []) + spec["containers"]:
        csc = c.get("securityContext") or {}
        where = f"{name}/{c['name']}"
        assert csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{where}: runAsNonRoot"
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        assert uid not in (None, 0), f"{where}: runAsUser must be a non-zero uid, got {uid}"
        assert csc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem"
        assert csc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
        args = c.get("args", []) + c.get("command", [])
        for a in args:
            assert not (a == "--token" or a.startswith("--token=")), f"{where}: token on argv: {a}"
        for e in c.get("env", []):
            assert "TOKEN" not in e["name"] or "FILE" in e["name"] or "valueFrom" not in e, \
                f"{where}: token in the environment ({e['name']}); mount it as a file"
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in template.get(ref["name"], set()), \
                    f"{where}: env {e['name']} reads {ref['name']}/{ref['key']}, not in the template"
        if name == "impq-coordinator":
            for flag in ("--token_file=", "--worker_token_file=", "--data_root=", "--tls_cert=",
                         "--tls_key=", "--tls_ca=", "--health_listen=127.0.0.1:",
                         "--metrics_auth_file="):
                assert any(a.startswith(flag) for a in args), f"{where}: no {flag}"
            assert "--insecure" not in args, f"{where}: --insecure"
            for probe in ("readinessProbe", "livenessProbe"):
                p = c.get(probe) or {}
                assert p, f"{where}: no {probe}"
                assert "grpc" not in p, f"{where}: {probe} is a plaintext gRPC probe on the mTLS port"
        if name == "impq-worker":
            for flag in ("--token_file=", "--data_root=", "--tls_ca=", "--tls_cert="):
                assert any(a.startswith(flag) for a in args), f"{where}: no {flag}"
            assert not c.get("ports"), f"{where}: a worker listens on nothing"
    for v in spec.get("volumes", []):
        if "secret" in v:
            sec = v["secret"]["secretName"]
            assert sec in template, f"{name}: mounts Secret {sec}, not in secret.example.yaml"
            for item in v["secret"].get("items", []):
                assert item["key"] in template[sec], \
                    f"{name}: mounts {sec}/{item['key']}, not in secret.example.yaml"
policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
assert any(p["spec"]["podSelector"] == {} and "Ingress" in p["spec"]["policyTypes"]
           and not p["spec"].get("ingress") for p in policies), "no default-deny ingress policy"
coord = [p for p in policies if p["spec"]["podSelector"].get("matchLabels") == {"app": "impq-coordinator"}]
assert coord, "no NetworkPolicy for the coordinator"
ports = {port["port"] for rule in coord[0]["spec"]["ingress"] for port in rule["ports"]}
assert ports == {50051, 9464}, f"coordinator policy opens {ports}"
for s in (d for d in docs if d["kind"] == "Service"):
    assert s["spec"].get("type", "ClusterIP") == "ClusterIP", f"Service {s['metadata']['name']} is exposed"
print(f"  {len(pods)} workloads non-root and read-only, {len(policies)} NetworkPolicies, "
      f"Secrets {sorted(template)}")
PY
      then pass "deploy/k8s: non-root, NetworkPolicy, Secrets from files, mTLS-safe probes"; else fail "deploy/k8s security invariants"; fi
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

# docker-compose.yml, issue 20: every service runs as a non-root user, ports are published on
# 127.0.0.1 only, tokens are compose secrets read from files (never argv), the coordinator and
# the workers have a data root and their token files, nothing runs --insecure.
if command -v python3 >/dev/null 2>&1 && python3 -c 'import yaml' 2>/dev/null; then
  if python3 - docker-compose.yml <<'PY'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
secrets = c.get("secrets") or {}
for name, s in secrets.items():
    assert "file" in s and s["file"].startswith("./deploy/secrets/"), \
        f"secret {name} must be a file under deploy/secrets/ (scripts/make_secrets.sh)"
for name, svc in c["services"].items():
    user = str(svc.get("user", ""))
    assert user and user.split(":")[0] not in ("0", "root"), f"{name}: runs as root (user: {user!r})"
    for p in svc.get("ports", []):
        assert str(p).startswith("127.0.0.1:"), f"{name}: port {p} is published beyond loopback"
    argv = [str(a) for a in (svc.get("entrypoint") or []) + (svc.get("command") or [])]
    for a in argv:
        assert not (a == "--token" or a.startswith("--token=")), f"{name}: token on argv: {a}"
    assert "--insecure" not in argv, f"{name}: --insecure"
    for s in svc.get("secrets", []):
        assert s in secrets, f"{name}: secret {s} is not defined"
    entry = " ".join(argv)
    binary = argv[0].rsplit("/", 1)[-1] if argv else ""
    if binary == "impq-coordinator":
        for flag in ("--token_file=/run/secrets/", "--worker_token_file=/run/secrets/", "--data_root=",
                     "--metrics_auth_file=/run/secrets/"):
            assert flag in entry, f"{name}: no {flag}"
    if binary == "impq-worker":
        for flag in ("--token_file=/run/secrets/", "--data_root="):
            assert flag in entry, f"{name}: no {flag}"
print(f"  {len(c['services'])} services, secrets {sorted(secrets)}")
PY
  then pass "docker-compose.yml: non-root, loopback ports, token secrets"; else fail "docker-compose.yml security invariants"; fi
else
  skip "docker-compose.yml invariants (python3-yaml not installed)"
fi

tool_checks=$ran
# The tokens scripts/make_secrets.sh writes stay out of git and out of every image (COPY . /src).
for ignore in .gitignore .dockerignore; do
  if grep -Eq '^/?deploy/secrets/?$' "$ignore"; then pass "$ignore lists deploy/secrets/"; else fail "$ignore does not list deploy/secrets/"; fi
done
for f in deploy/Dockerfile deploy/coordinator.Dockerfile deploy/worker.Dockerfile; do
  if grep -q '^FROM ' "$f"; then pass "$f has FROM"; else fail "$f has no FROM"; fi
  # The last USER of the file (the final stage's) is a non-zero uid or a non-root name.
  user=$(awk '/^FROM /{u=""} /^USER /{u=$2} END{print u}' "$f")
  case "$user" in
    ""|0|0:*|root|root:*) fail "$f: the image runs as root (USER '${user}')" ;;
    *) pass "$f runs as $user" ;;
  esac
  if grep -Eq -- '"--token"|--token=' "$f"; then fail "$f: token on argv"; fi
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
