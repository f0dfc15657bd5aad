#!/usr/bin/env bash
# Checks the kustomize base: `kubectl kustomize` renders it; kubernetes-validate (PyPI, in a
# virtual environment under target/) validates the render against Kubernetes 1.32's schemas;
# the Deployment says what the README promises (read-only root, non-root, no capabilities, no
# token, probes, memory, a termination grace longer than --shutdown-grace); then a real
# consumer of Kubernetes YAML runs it: an overlay for the check (host network, a loopback
# address and port) rendered and started with `podman kube play`, a poem fetched byte for
# byte, a clean stop, and `podman kube down` removing it.
set -euo pipefail
cd "$(dirname "$0")/../.."
source contrib/lib.sh

# catatonit is the pod's infra container.
mapfile -t missing < <(missing_packages podman=podman runc=runc catatonit=catatonit \
  nc=netcat-openbsd curl=curl)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
# The machine image ships kubectl; Debian's kubernetes-client conflicts with it.
command -v kubectl >/dev/null || missing+=(kubernetes-client)
install_packages "${missing[@]}"

scratch
kubectl kustomize contrib/kubernetes >"$work/base.yaml"

venv=target/kubernetes-validate
[ -x "$venv/bin/kubernetes-validate" ] ||
  { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet kubernetes-validate; }
"$venv/bin/kubernetes-validate" --kubernetes-version 1.32.0 --strict "$work/base.yaml"

version=$(grep -m 1 '^version = ' Cargo.toml | cut -d '"' -f 2)
"$venv/bin/python" - "$work/base.yaml" "$version" <<'PY'
import re, sys, yaml
docs = list(yaml.safe_load_all(open(sys.argv[1])))
kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
assert kinds == [("Deployment", "poetry-serve"), ("Service", "poetry-serve"),
                 ("Service", "poetry-serve-metrics")], kinds
deployment = next(d for d in docs if d["kind"] == "Deployment")
pod = deployment["spec"]["template"]["spec"]
(container,) = pod["containers"]
context = container["securityContext"]
env = {e["name"]: e["value"] for e in container["env"]}
def seconds(text):
    value, unit = re.fullmatch(r"([0-9.]+)(s|m)?", text).groups()
    return float(value) * (60 if unit == "m" else 1)
promises = {
    "the image of this version": container["image"] == f"localhost/poetry-serve:{sys.argv[2]}",
    "no service-account token": pod["automountServiceAccountToken"] is False,
    "no service links (they would set POETRY_SERVE_PORT)": pod["enableServiceLinks"] is False,
    "read-only root": context["readOnlyRootFilesystem"] is True,
    "non-root": pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0,
    "no privilege escalation": context["allowPrivilegeEscalation"] is False,
    "every capability dropped": context["capabilities"]["drop"] == ["ALL"],
    "liveness on /healthz": container["livenessProbe"]["httpGet"]["path"] == "/healthz",
    "readiness on /readyz": container["readinessProbe"]["httpGet"]["path"] == "/readyz",
    "memory request and limit": {"memory"} <= container["resources"]["requests"].keys()
        and {"memory"} <= container["resources"]["limits"].keys(),
    "termination grace > --shutdown-grace":
        pod["terminationGracePeriodSeconds"] > seconds(env["POETRY_SERVE_SHUTDOWN_GRACE"]),
}
broken = [name for name, kept in promises.items() if not kept]
assert not broken, f"the Deployment breaks: {broken}"
PY
echo "kubernetes: the base renders, validates against 1.32 and keeps its promises"

# Run it: the overlay puts the pod on the host's network, on loopback, and numbers the ports
# (podman maps declared container ports, which host networking refuses, so the overlay drops
# them and the probes name the metrics port by number).
export CONTAINERS_CONF=$PWD/contrib/container/containers.conf
image=$(bash contrib/container/build.sh)
port=$(free_port)
metrics=$(free_port)
mkdir "$work/overlay"
cat >"$work/overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$work/overlay" contrib/kubernetes)
images:
  - name: localhost/poetry-serve
    newTag: "${image##*:}"
patches:
  - patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: poetry-serve
      spec:
        replicas: 1
        template:
          spec:
            hostNetwork: true
            containers:
              - name: poetry-serve
                env:
                  - {name: POETRY_SERVE_IFACE, value: "127.0.0.1"}
                  - {name: POETRY_SERVE_PORT, value: "$port"}
                  - {name: POETRY_SERVE_METRICS, value: "127.0.0.1:$metrics"}
                  - {name: POETRY_SERVE_DELAY, value: "0"}
  - target: {kind: Deployment, name: poetry-serve}
    patch: |-
      - {op: remove, path: /spec/template/spec/containers/0/ports}
      - {op: replace, path: /spec/template/spec/containers/0/livenessProbe/httpGet/port, value: $metrics}
      - {op: replace, path: /spec/template/spec/containers/0/readinessProbe/httpGet/port, value: $metrics}
YAML
kubectl kustomize "$work/overlay" >"$work/play.yaml"
"$venv/bin/kubernetes-validate" --kubernetes-version 1.32.0 --strict "$work/play.yaml" >/dev/null

pod=poetry-serve-pod-0
container=$pod-poetry-serve
down() {
  podman kube down "$work/play.yaml" >/dev/null 2>&1 || true
  stop_scratch
}
trap down EXIT
# Without systemd, podman cannot schedule the probes as health checks and says so: noise here.
podman kube play "$work/play.yaml" >/dev/null 2>"$work/play.err" ||
  { cat "$work/play.err" >&2; exit 1; }
for _ in $(seq 200); do
  podman logs "$container" >"$work/logs" 2>/dev/null || true
  grep -q "listening on 127.0.0.1:$port" "$work/logs" && break
  sleep 0.05
done
timeout 20 nc -d 127.0.0.1 "$port" >"$work/got"
poems=(poems/*.txt)
first=${poems[0]}
cmp "$work/got" "$first" || { echo "the pod did not send $first byte for byte" >&2; exit 1; }
[ "$(curl --silent --max-time 5 "http://127.0.0.1:$metrics/readyz")" = ready ] ||
  { echo "the pod is not ready on /readyz" >&2; exit 1; }

# podman 4.3's kube down stops a pod with SIGKILL at once (podman issues #19135, #21767),
# which would cut poems in flight; `podman pod stop` first sends the image's SIGTERM, which
# drains. Then kube down removes the pod.
since=$(date +%s)
podman pod stop "$pod" >/dev/null 2>"$work/stop.err" || { cat "$work/stop.err" >&2; exit 1; }
code=$(podman inspect --format '{{.State.ExitCode}}' "$container")
[ "$code" = 0 ] || { echo "the pod's server exited $code" >&2; podman logs "$container" >&2; exit 1; }
podman logs "$container" >"$work/logs" 2>&1
grep -q 'letting poems in flight finish' "$work/logs" ||
  { echo "no drain line in the pod's logs" >&2; podman logs "$container" >&2; exit 1; }
podman kube down "$work/play.yaml" >/dev/null 2>"$work/down.err" || { cat "$work/down.err" >&2; exit 1; }
! podman pod exists "$pod" || { echo "podman kube down left the pod" >&2; exit 1; }
! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "something still listens on $port" >&2; exit 1; }
died=$(podman events --stream=false --since "$since" --filter "container=$container" \
  --filter event=died --format '{{.ContainerExitCode}}')
[ "$died" = 0 ] || { echo "the server died with $died" >&2; exit 1; }
echo "kubernetes: podman kube play ran the Deployment; a poem arrived byte for byte; it stopped with exit 0 and was removed"
