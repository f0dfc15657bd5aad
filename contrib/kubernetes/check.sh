#!/usr/bin/env bash
# Checks the kustomize base and its optional components: `kubectl kustomize` renders them;
# kubernetes-validate (PyPI, in a virtual environment under target/) validates every resource
# against Kubernetes 1.32's schemas, strictly, except the ServiceMonitor, whose kind is the
# Prometheus operator's CRD and in no Kubernetes schema (it is checked against the Service it
# selects instead); the resources say what docs/install.md promises (read-only root, non-root,
# no capabilities, no token, probes, memory, grace periods that add up, a preStop sleep, spread
# over nodes, a PodDisruptionBudget and a NetworkPolicy that select the pods, the dashboard);
# then a real consumer of Kubernetes YAML runs it: an overlay for the check (host network, a
# loopback address and port) rendered and started with `podman kube play`, a poem fetched byte
# for byte while the pod is stopped as docs/install.md says, `podman pod stop --time 30`: the
# poem finishes, /readyz says shutting down meanwhile, and the server exits 0; `podman kube
# down` removes it.
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
# Debian 12's kubernetes-client is 1.20, whose kustomize knows neither `labels` nor
# `components`: say so in one line rather than fail on a field it does not know.
minor=$(kubectl version --client -o json |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["clientVersion"]["minor"].rstrip("+"))')
if [ "$minor" -lt 27 ]; then
  echo "kubernetes: kubectl 1.27 or later is needed for the manifests' kustomize; this is 1.$minor" >&2
  exit 1
fi

scratch
venv=target/kubernetes-validate
[ -x "$venv/bin/kubernetes-validate" ] ||
  { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet kubernetes-validate; }

# validate FILE [KIND...]: every resource in FILE is valid for Kubernetes 1.32, strictly, and
# has a schema there, but for the KINDs given (CRDs), which are left out.
validate() {
  local file=$1; shift
  "$venv/bin/python" - "$file" "$work/validated.yaml" "$@" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kept = [d for d in docs if d["kind"] not in sys.argv[3:]]
for d in docs:
    if d["kind"] in sys.argv[3:]:
        print(f"kubernetes: {d['kind']}/{d['metadata']['name']} not validated: a CRD's kind, "
              "in no Kubernetes schema")
yaml.safe_dump_all(kept, open(sys.argv[2], "w"))
PY
  "$venv/bin/kubernetes-validate" --kubernetes-version 1.32.0 --strict --quiet \
    "$work/validated.yaml" >"$work/validate.log" 2>&1 || { cat "$work/validate.log" >&2; return 1; }
  # A kind without a schema (an apiVersion misspelt, say) is only a warning there.
  ! grep -q . "$work/validate.log" || { cat "$work/validate.log" >&2; return 1; }
}

kubectl kustomize contrib/kubernetes >"$work/base.yaml"
validate "$work/base.yaml"
# An overlay that adds both optional components, as docs/install.md shows one.
mkdir "$work/full"
cat >"$work/full/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$work/full" contrib/kubernetes)
components:
  - $(realpath --relative-to="$work/full" contrib/kubernetes/components/servicemonitor)
  - $(realpath --relative-to="$work/full" contrib/kubernetes/components/hpa)
YAML
kubectl kustomize "$work/full" >"$work/full.yaml"
validate "$work/full.yaml" ServiceMonitor

version=$(grep -m 1 '^version = ' Cargo.toml | cut -d '"' -f 2)
"$venv/bin/python" - "$work/base.yaml" "$work/full.yaml" "$version" contrib/grafana/poetry-serve.json <<'PY'
import json, re, sys, yaml
def load(path):
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(path)) if d}
base, full = load(sys.argv[1]), load(sys.argv[2])
assert sorted(base) == [("ConfigMap", "poetry-serve-dashboard"), ("Deployment", "poetry-serve"),
                        ("NetworkPolicy", "poetry-serve"), ("PodDisruptionBudget", "poetry-serve"),
                        ("Service", "poetry-serve"), ("Service", "poetry-serve-metrics")], sorted(base)
assert sorted(set(full) - set(base)) == [("HorizontalPodAutoscaler", "poetry-serve"),
                                         ("ServiceMonitor", "poetry-serve")], sorted(full)
deployment = base["Deployment", "poetry-serve"]
template = deployment["spec"]["template"]
pod = template["spec"]
pod_labels = template["metadata"]["labels"]
(container,) = pod["containers"]
context = container["securityContext"]
env = {e["name"]: e["value"] for e in container["env"]}
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
def seconds(text):
    value, unit = re.fullmatch(r"([0-9.]+)(s|m)?", text).groups()
    return float(value) * (60 if unit == "m" else 1)
def selects(selector, labels):
    return selector and all(labels.get(k) == v for k, v in selector["matchLabels"].items())
pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
grace = seconds(env["POETRY_SERVE_SHUTDOWN_GRACE"])
spread = pod["topologySpreadConstraints"]
pdb = base["PodDisruptionBudget", "poetry-serve"]["spec"]
policy = base["NetworkPolicy", "poetry-serve"]["spec"]
metrics_rules = [r for r in policy["ingress"] if {p["port"] for p in r["ports"]} == {"metrics"}]
poem_rules = [r for r in policy["ingress"] if {p["port"] for p in r["ports"]} == {"poems"}]
dashboard = base["ConfigMap", "poetry-serve-dashboard"]
metrics_service = base["Service", "poetry-serve-metrics"]
monitor = full["ServiceMonitor", "poetry-serve"]["spec"]
hpa = full["HorizontalPodAutoscaler", "poetry-serve"]["spec"]
promises = {
    "the image of this version": container["image"] == f"localhost/poetry-serve:{sys.argv[3]}",
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
    "a preStop sleep": pre_stop >= 1,
    # The preStop sleep, the grace, at most 2 s to cut what is left, and a margin.
    "termination grace >= preStop + --shutdown-grace + 2 s + 3 s":
        pod["terminationGracePeriodSeconds"] >= pre_stop + grace + 5,
    "spread over nodes": [c["topologyKey"] for c in spread] == ["kubernetes.io/hostname"]
        and selects(spread[0]["labelSelector"], pod_labels),
    "a PodDisruptionBudget of the pods, one at a time":
        selects(pdb["selector"], pod_labels) and pdb["maxUnavailable"] == 1,
    "a NetworkPolicy of the pods": selects(policy["podSelector"], pod_labels),
    "poems from anywhere": len(poem_rules) == 1 and "from" not in poem_rules[0],
    "metrics from chosen peers only": len(metrics_rules) == 1 and metrics_rules[0].get("from"),
    "nothing out": "Egress" in policy["policyTypes"] and policy["egress"] == [],
    "the policy's ports exist": {"poems", "metrics"} <= ports.keys(),
    "the dashboard, as it is in contrib/grafana":
        json.loads(dashboard["data"]["poetry-serve.json"]) == json.load(open(sys.argv[4]))
        and dashboard["metadata"]["labels"]["grafana_dashboard"] == "1",
    "the ServiceMonitor scrapes the metrics Service's port":
        selects(monitor["selector"], metrics_service["metadata"]["labels"])
        and [e["port"] for e in monitor["endpoints"]]
            == [p["name"] for p in metrics_service["spec"]["ports"]],
    "the ServiceMonitor's job is poetry-serve, as the alerts expect":
        metrics_service["metadata"]["labels"][monitor["jobLabel"]] == "poetry-serve",
    "only the metrics Service has that port": not any(
        p["name"] == "metrics" for p in base["Service", "poetry-serve"]["spec"]["ports"]),
    "the HPA scales the Deployment, which no longer sets replicas":
        hpa["scaleTargetRef"]["name"] == "poetry-serve"
        and "replicas" in deployment["spec"]
        and "replicas" not in full["Deployment", "poetry-serve"]["spec"],
}
broken = [name for name, kept in promises.items() if not kept]
assert not broken, f"the manifests break: {broken}"
PY
echo "kubernetes: the base and its components render, validate against 1.32 and keep their promises"

# Run it: the overlay puts the pod on the host's network, on loopback, and numbers the ports
# (podman maps declared container ports, which host networking refuses, so the overlay drops
# them and the probes name the metrics port by number). Paced: a poem takes 11 s.
export CONTAINERS_CONF=$PWD/contrib/container/containers.conf
image=$(bash contrib/container/build.sh)
# The image this build replaced, if nothing uses it (contrib/container/check.sh does the same).
podman image prune --force --filter label=org.opencontainers.image.title=poetry-serve >/dev/null
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
                  - {name: POETRY_SERVE_DELAY, value: "0.2"}
  - target: {kind: Deployment, name: poetry-serve}
    patch: |-
      - {op: remove, path: /spec/template/spec/containers/0/ports}
      - {op: replace, path: /spec/template/spec/containers/0/livenessProbe/httpGet/port, value: $metrics}
      - {op: replace, path: /spec/template/spec/containers/0/readinessProbe/httpGet/port, value: $metrics}
YAML
kubectl kustomize "$work/overlay" >"$work/play.yaml"
validate "$work/play.yaml"

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
[ "$(curl --silent --max-time 5 "http://127.0.0.1:$metrics/readyz")" = ready ] ||
  { echo "the pod is not ready on /readyz" >&2; exit 1; }

# A poem in flight (57 chunks, 0.2 s apart: 11 s, more than podman's default 10 s) when the
# pod is stopped with docs/install.md's timeout: it finishes, and the server exits 0.
# (podman 4.3 ignores terminationGracePeriodSeconds and the preStop hook, and its kube down
# sends SIGKILL at once, podman issues #19135 and #21767: hence pod stop, with a time.)
timeout 30 nc -d 127.0.0.1 "$port" >"$work/got" &
pids+=($!)
sleep 1
since=$(date +%s)
started=$(date +%s%N)
podman pod stop --time 30 "$pod" >/dev/null 2>"$work/stop.err" &
stopping=$!
for _ in $(seq 100); do
  grep -q 'letting poems in flight finish' <(podman logs "$container" 2>&1) && break
  sleep 0.05
done
ready=$(curl --silent --max-time 5 --output /dev/null --write-out '%{http_code}' \
  "http://127.0.0.1:$metrics/readyz" || true)
wait "$stopping" || { cat "$work/stop.err" >&2; exit 1; }
took_ms=$(( ($(date +%s%N) - started) / 1000000 ))
wait "${pids[-1]}"
[ "$ready" = 503 ] || { echo "/readyz answered '$ready' while draining" >&2; exit 1; }
code=$(podman inspect --format '{{.State.ExitCode}}' "$container")
[ "$code" = 0 ] || { echo "the pod's server exited $code" >&2; podman logs "$container" >&2; exit 1; }
poems=(poems/*.txt)
first=${poems[0]}
cmp "$work/got" "$first" ||
  { echo "the poem in flight did not arrive byte for byte" >&2; podman logs "$container" >&2; exit 1; }
podman logs "$container" >"$work/logs" 2>&1
for line in 'letting poems in flight finish streaming=1' 'outcome="complete"' 'poetry_serve::stats: stats'; do
  grep -q "$line" "$work/logs" || { echo "no '$line' in the pod's logs" >&2; cat "$work/logs" >&2; exit 1; }
done
podman kube down "$work/play.yaml" >/dev/null 2>"$work/down.err" || { cat "$work/down.err" >&2; exit 1; }
! podman pod exists "$pod" || { echo "podman kube down left the pod" >&2; exit 1; }
! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "something still listens on $port" >&2; exit 1; }
died=$(podman events --stream=false --since "$since" --filter "container=$container" \
  --filter event=died --format '{{.ContainerExitCode}}')
[ "$died" = 0 ] || { echo "the server died with $died" >&2; exit 1; }
echo "kubernetes: podman kube play ran the Deployment; podman pod stop --time 30 let a poem in" \
  "flight finish (${took_ms} ms), /readyz said 503 meanwhile, exit 0; kube down removed it"
