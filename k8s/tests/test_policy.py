"""Policy checks of the rendered manifests (kustomize and Helm, dev and prod):

every container has requests and limits, startup/readiness/liveness probes, runs as non-root
with a read-only root filesystem, no privilege escalation, every capability dropped and the
RuntimeDefault seccomp profile; every image is pinned (a tag, never `latest`); every ConfigMap
the repository's files feed equals those files, and no rules file or dashboard is left out;
every reference to a ConfigMap, Secret or PVC resolves; a default-deny NetworkPolicy exists and
every workload has its own policy; only Grafana is exposed; the quota holds every workload at its
HPA maximum.
"""

import pathlib
import re
import subprocess

import pytest
import yaml

from conftest import ROOT

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}
# Nodes the quota is sized for (the quota files say the same).
NODES = {"dev": 4, "prod": 20}
# kustomize's name suffix: 10 characters of its hash alphabet (no vowels, so no real word).
HASH = re.compile(r"-[bcdfghkmt2456789]{10}$")


def base_name(name):
    return HASH.sub("", name)


def workloads(objs):
    return [o for o in objs if o["kind"] in WORKLOADS]


def containers(objs):
    for w in workloads(objs):
        pod = w["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            yield w, pod, c


def test_containers_have_resources_probes_and_security(rendered):
    env, source, objs = rendered
    problems = []
    for w, pod, c in containers(objs):
        where = f"{w['kind']}/{w['metadata']['name']}/{c['name']}"
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(kind, {}):
                    problems.append(f"{where}: no {kind}.{r}")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe not in c:
                problems.append(f"{where}: no {probe}")
        psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
        if not (csc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            problems.append(f"{where}: runAsNonRoot not set")
        if (csc.get("runAsUser", psc.get("runAsUser")) or 0) == 0:
            problems.append(f"{where}: runs as uid 0 or no uid")
        if csc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: root filesystem writable")
        if csc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: privilege escalation allowed")
        if csc.get("capabilities", {}).get("drop") != ["ALL"] or csc.get("capabilities", {}).get("add"):
            problems.append(f"{where}: capabilities not dropped")
        seccomp = csc.get("seccompProfile", psc.get("seccompProfile", {}))
        if seccomp.get("type") != "RuntimeDefault":
            problems.append(f"{where}: seccomp not RuntimeDefault")
        if csc.get("privileged") or pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
            problems.append(f"{where}: privileged or host namespaces")
    for w in workloads(objs):
        for v in w["spec"]["template"]["spec"].get("volumes", []):
            if "hostPath" in v and w["metadata"]["name"] != "node-agent":
                problems.append(f"{w['metadata']['name']}: hostPath volume {v['name']}")
    assert not problems, f"{source} {env}:\n" + "\n".join(problems)


def test_node_agent_mounts_host_root_read_only(rendered):
    env, source, objs = rendered
    (ds,) = [o for o in objs if o["kind"] == "DaemonSet" and o["metadata"]["name"] == "node-agent"]
    c = ds["spec"]["template"]["spec"]["containers"][0]
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/host"]
    assert mount["readOnly"] is True
    assert c["args"][:2] == ["--host-root", "/host"]
    env_vars = {e["name"]: e for e in c["env"]}
    assert env_vars["K8S_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert "host.name=$(K8S_NODE_NAME)" in env_vars["OTEL_RESOURCE_ATTRIBUTES"]["value"]


def test_detector_history_is_on_a_writable_volume(rendered):
    # The sample detector config writes its anomaly history under ${DETECTOR_HISTORY}; with a
    # read-only root filesystem that path must be on a mounted, writable volume.
    env, source, objs = rendered
    (dep,) = [o for o in workloads(objs) if base_name(o["metadata"]["name"]) == "anomaly-detector"]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    path = {e["name"]: e.get("value") for e in c["env"]}.get("DETECTOR_HISTORY")
    assert path, "DETECTOR_HISTORY is not set: the history would go to .run/ on the read-only root"
    writable = [m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")]
    assert any(path.startswith(m.rstrip("/") + "/") for m in writable), (path, writable)
    assert "${env:DETECTOR_HISTORY" in (ROOT / "anomaly-detector/config/detector.yaml").read_text()


def test_images_pinned(rendered):
    env, source, objs = rendered
    for w, _, c in containers(objs):
        image = c["image"]
        name, _, tag = image.rpartition(":")
        assert name and "/" in name and tag, f"{image}: not pinned to a tag"
        assert tag != "latest" and not tag.startswith("latest"), f"{image}: `latest` is not a version"
        assert "@" not in name or tag, image


def repo_file_configmaps():
    """(ConfigMap, key) -> repository file, from the base's configMapGenerator (and prod's)."""
    wanted = {}
    for kdir in ("k8s/base", "k8s/overlays/prod"):
        k = yaml.safe_load((ROOT / kdir / "kustomization.yaml").read_text())
        for gen in k.get("configMapGenerator", []):
            for f in gen.get("files", []):
                key, _, path = f.rpartition("=") if "=" in f else (pathlib.Path(f).name, "", f)
                wanted[(gen["name"], key)] = (ROOT / kdir / path).resolve()
    return wanted


def test_generated_configmaps_equal_repository_files(rendered):
    env, source, objs = rendered
    maps = {base_name(o["metadata"]["name"]): o.get("data", {}) for o in objs if o["kind"] == "ConfigMap"}
    checked = 0
    for (cm, key), path in repo_file_configmaps().items():
        if cm not in maps:
            assert env == "dev" and cm == "otel-agent-config", f"{source} {env}: ConfigMap {cm} missing"
            continue
        if key not in maps[cm]:
            assert env == "dev" and key == "collector-gateway-prod.yaml", f"{source} {env}: {cm} lacks {key}"
            continue
        assert maps[cm][key] == path.read_text(), f"{source} {env}: {cm}[{key}] differs from {path.relative_to(ROOT)}"
        checked += 1
    assert checked >= 18


def test_no_repository_config_file_left_out():
    """A new rules file or dashboard must reach the cluster too (e.g. prometheus/rules/slos.yml)."""
    listed = {p for p in repo_file_configmaps().values()}
    globs = ["prometheus/rules/*.yml", "grafana/dashboards/*.json", "grafana/provisioning/*/*.yaml"]
    missing = [str(p.relative_to(ROOT)) for g in globs for p in ROOT.glob(g) if p.resolve() not in listed]
    assert not missing, f"add to k8s/base/kustomization.yaml configMapGenerator: {missing}"


def test_references_resolve(rendered):
    env, source, objs = rendered
    names = {(o["kind"], base_name(o["metadata"]["name"])): o for o in objs}
    problems = []
    for w, pod, c in containers(objs):
        for e in c.get("env", []):
            ref = e.get("valueFrom", {})
            for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                if key in ref:
                    obj = names.get((kind, base_name(ref[key]["name"])))
                    data = (obj or {}).get("data", {}) | (obj or {}).get("stringData", {})
                    if ref[key]["key"] not in data:
                        problems.append(f"{w['metadata']['name']}: {kind} {ref[key]['name']} has no key {ref[key]['key']}")
    for w in workloads(objs):
        claims = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
        for v in w["spec"]["template"]["spec"].get("volumes", []):
            if "configMap" in v and ("ConfigMap", base_name(v["configMap"]["name"])) not in names:
                problems.append(f"{w['metadata']['name']}: ConfigMap {v['configMap']['name']} missing")
            if "secret" in v and ("Secret", base_name(v["secret"]["secretName"])) not in names:
                problems.append(f"{w['metadata']['name']}: Secret {v['secret']['secretName']} missing")
            if "persistentVolumeClaim" in v and ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) not in names:
                problems.append(f"{w['metadata']['name']}: PVC {v['persistentVolumeClaim']['claimName']} missing")
        pod = w["spec"]["template"]["spec"]
        vols = {v["name"] for v in pod.get("volumes", [])} | claims
        for c in pod["containers"]:
            for m in c.get("volumeMounts", []):
                if m["name"] not in vols:
                    problems.append(f"{w['metadata']['name']}: mount {m['name']} has no volume")
    for hpa in (o for o in objs if o["kind"] == "HorizontalPodAutoscaler"):
        t = hpa["spec"]["scaleTargetRef"]
        if (t["kind"], t["name"]) not in names:
            problems.append(f"HPA {hpa['metadata']['name']} targets missing {t['kind']}/{t['name']}")
    assert not problems, f"{source} {env}:\n" + "\n".join(problems)


def selects(selector, labels):
    if not selector:
        return True
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        present = e["key"] in labels
        ok = {"In": present and labels[e["key"]] in e.get("values", []),
              "NotIn": not present or labels[e["key"]] not in e.get("values", []),
              "Exists": present, "DoesNotExist": not present}[e["operator"]]
        if not ok:
            return False
    return True


def test_network_policies(rendered):
    env, source, objs = rendered
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert deny, f"{source} {env}: no default-deny NetworkPolicy"
    own = [p for p in policies if p["spec"]["podSelector"] != {}]
    for w in workloads(objs):
        labels = w["spec"]["template"]["metadata"]["labels"]
        mine = [p["metadata"]["name"] for p in own if selects(p["spec"]["podSelector"], labels)]
        assert mine, f"{source} {env}: no NetworkPolicy selects {w['kind']}/{w['metadata']['name']}"
    # Ingress open to any source only on the collectors' OTLP ports and Grafana's HTTP port.
    for p in own:
        for rule in p["spec"].get("ingress", []):
            if "from" not in rule:
                ports = {pp["port"] for pp in rule.get("ports", [])}
                allowed = {4317, 4318} if p["metadata"]["name"] in ("otel-collector", "otel-agent") else {3000} if p["metadata"]["name"] == "grafana" else set()
                assert ports and ports <= allowed, f"{source} {env}: {p['metadata']['name']} open to all on {ports}"


def test_only_grafana_exposed(rendered):
    env, source, objs = rendered
    exposed = [o["metadata"]["name"] for o in objs if o["kind"] == "Service" and o["spec"].get("type") in ("LoadBalancer", "NodePort")]
    assert exposed == ["grafana"], f"{source} {env}: exposed services {exposed}"


def quantity(v):
    v = str(v)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for u, f in units.items():
        if v.endswith(u):
            return float(v[: -len(u)]) * f
    return float(v)


def test_quota_holds_every_workload_at_its_maximum(rendered):
    env, source, objs = rendered
    (quota,) = [o for o in objs if o["kind"] == "ResourceQuota"]
    hard = quota["spec"]["hard"]
    hpa_max = {o["spec"]["scaleTargetRef"]["name"]: o["spec"]["maxReplicas"] for o in objs if o["kind"] == "HorizontalPodAutoscaler"}
    total = {"requests.cpu": 0.0, "requests.memory": 0.0, "limits.cpu": 0.0, "limits.memory": 0.0}
    pods = 0
    for w in workloads(objs):
        n = NODES[env] if w["kind"] == "DaemonSet" else hpa_max.get(w["metadata"]["name"], w["spec"].get("replicas", 1))
        pods += n
        for c in w["spec"]["template"]["spec"]["containers"]:
            for k in total:
                kind, res = k.split(".")
                total[k] += n * quantity(c["resources"][kind][res])
    for k, v in total.items():
        assert v <= quantity(hard[k]), f"{source} {env}: {k} needs {v:g}, quota {hard[k]}"
    assert pods <= int(hard["pods"])


def test_secret_sources_are_not_committed():
    tracked = subprocess.run(["git", "ls-files", "k8s"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "secrets.env" not in tracked
    for env in ("dev", "prod"):
        ignored = subprocess.run(["git", "check-ignore", "-q", f"k8s/overlays/{env}/secrets.env"], cwd=ROOT)
        assert ignored.returncode == 0, f"k8s/overlays/{env}/secrets.env is not git-ignored"
