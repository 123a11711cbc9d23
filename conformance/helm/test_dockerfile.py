"""Static checks of the Dockerfile (no Docker engine runs in CI): the stages, the runtime user and
entrypoint the chart relies on, and that every path it copies exists and survives .dockerignore."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for op, rest in instructions():
        if op == "FROM":
            result.append([])
        if result:
            result[-1].append((op, rest))
    return result


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str) -> bool:
    parts = path.split("/")
    for pattern in dockerignore():
        for i in range(1, len(parts) + 1):
            if fnmatch.fnmatch("/".join(parts[:i]), pattern):
                return True
    return False


def test_two_stages_build_then_distroless_nonroot():
    build, final = stages()
    # A base image may be pinned by digest (scripts/pin-base-images.sh).
    digest = r"(@sha256:[0-9a-f]{64})?"
    assert re.fullmatch(r"rust:\$\{RUST_VERSION\}-bookworm" + digest + r" AS build", build[0][1])
    assert re.search(r"^ARG RUST_VERSION=1\.\d+$", DOCKERFILE, re.M)
    assert re.fullmatch(r"gcr\.io/distroless/cc-debian12:nonroot" + digest, final[0][1])
    final_ops = dict((op, rest) for op, rest in final)
    assert final_ops["USER"] == "65532:65532"
    assert final_ops["ENTRYPOINT"] == '["/entra-operator"]'
    assert final_ops["CMD"] == '["run"]'
    copies = [rest for op, rest in final if op == "COPY"]
    assert copies == ["--from=build /out/entra-operator /entra-operator"]


def test_build_is_locked_and_builds_only_the_operator_binary():
    runs = " ".join(rest for op, rest in stages()[0] if op == "RUN")
    assert "cargo fetch --locked" in runs
    build = re.search(r"cargo build --profile (\S+) --locked .*--bin entra-operator", runs)
    assert build, runs
    # The profile is an optimised one (the release profile or one that inherits it), and the
    # binary is copied out of that profile's directory.
    profile = build.group(1)
    profiles = tomllib.loads((ROOT / "Cargo.toml").read_text()).get("profile", {})
    assert profile == "release" or profiles[profile]["inherits"] == "release"
    assert f"target/{profile}/entra-operator /out/entra-operator" in runs


def test_manifests_are_copied_before_sources_for_layer_caching():
    build = stages()[0]
    copies = [rest.split() for op, rest in build if op == "COPY"]
    order = [c[0] for c in copies]
    fetch = next(i for i, (op, rest) in enumerate(build) if op == "RUN" and "cargo fetch" in rest)
    fetch_copy_index = sum(1 for op, _ in build[:fetch] if op == "COPY")
    assert set(order[:fetch_copy_index]) >= {"Cargo.toml", "emulators/entra/Cargo.toml", "emulators/kube/Cargo.toml"}
    assert "src" in order[fetch_copy_index:]


def test_every_workspace_member_and_copied_path_is_in_the_context():
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]
    copied = [
        src
        for op, rest in stages()[0]
        if op == "COPY"
        for src in rest.split()[:-1]
        if not src.startswith("--")
    ]
    for member in workspace["members"]:
        manifest = "Cargo.toml" if member == "." else f"{member}/Cargo.toml"
        assert manifest in copied, f"{manifest} is not copied before cargo fetch"
        if member != ".":
            # The emulators are test tooling: only their manifests enter the image, never their
            # sources (nor their test keys); the image is built with --no-default-features.
            assert not any(c.startswith(member) and c != manifest for c in copied), f"{member} sources are copied"
    assert "--no-default-features" in DOCKERFILE
    for path in copied:
        assert (ROOT / path).exists(), f"Dockerfile copies {path}, which does not exist"
        assert not ignored(path), f".dockerignore excludes {path}"
    for path in ("target", ".venv", ".git"):
        assert ignored(path)


def test_image_user_matches_the_chart_security_context():
    user = dict((op, rest) for op, rest in stages()[1])["USER"]
    values_port = yaml.safe_load((ROOT / "charts/entra-operator/values.yaml").read_text())["admin"]["port"]
    deployment = (ROOT / "charts/entra-operator/templates/deployment.yaml").read_text()
    assert user == "65532:65532" and "runAsUser: 65532" in deployment
    assert f"EXPOSE {values_port}" in DOCKERFILE
