#!/usr/bin/env bash
# Generates the two bearer tokens of the service, never committed nor copied into an image
# (deploy/secrets/ is in .gitignore and .dockerignore):
#   deploy/secrets/token          the clients' token (impqctl; coordinator --token_file)
#   deploy/secrets/worker_token   the workers' token (impq-worker --token_file; coordinator
#                                 --worker_token_file)
#   deploy/secrets/metrics_auth   "prometheus:<password>": the metrics endpoint's basic auth
#                                 (coordinator --metrics_auth_file)
#   deploy/secrets/metrics_password  the same password alone (Prometheus' password_file)
# 32 random bytes each, base64. docker-compose.yml mounts them as compose secrets; for
# Kubernetes the same files make the impq-token Secret (deploy/k8s/secret.example.yaml):
#   kubectl -n impq create secret generic impq-token \
#     --from-file=token=deploy/secrets/token --from-file=worker_token=deploy/secrets/worker_token \
#     --from-file=metrics_auth=deploy/secrets/metrics_auth \
#     --from-file=metrics_password=deploy/secrets/metrics_password
# The directory is 0700 (only you can reach the files on this host); the files are 0644
# because Compose bind-mounts a secret file with its host mode and the containers run as
# uid 10001, which must read it. Existing tokens are kept unless --force.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=deploy/secrets
force=0
[ "${1:-}" = "--force" ] && force=1
mkdir -p "$dir"
chmod 0700 "$dir"
for name in token worker_token; do
  f="$dir/$name"
  if [ -s "$f" ] && [ "$force" = 0 ]; then
    echo "kept $f (--force makes a new one)"
    continue
  fi
  (umask 077; head -c 32 /dev/urandom | base64 >"$f.tmp")
  chmod 0644 "$f.tmp"
  mv "$f.tmp" "$f"
  echo "wrote $f"
done
if [ ! -s "$dir/metrics_auth" ] || [ "$force" = 1 ]; then
  (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$dir/metrics_password.tmp")
  printf 'prometheus:%s\n' "$(cat "$dir/metrics_password.tmp")" >"$dir/metrics_auth.tmp"
  chmod 0644 "$dir/metrics_password.tmp" "$dir/metrics_auth.tmp"
  mv "$dir/metrics_password.tmp" "$dir/metrics_password"
  mv "$dir/metrics_auth.tmp" "$dir/metrics_auth"
  echo "wrote $dir/metrics_auth and $dir/metrics_password"
else
  echo "kept $dir/metrics_auth (--force makes a new one)"
fi
if cmp -s "$dir/token" "$dir/worker_token"; then
  echo "make_secrets: the two tokens are equal; run again with --force" >&2
  exit 1
fi
