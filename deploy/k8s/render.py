"""Build an overlay with kustomize and lay its objects out for the validators.

    python -m deploy.k8s.render deploy/k8s/overlays/local OUT_DIR

writes OUT_DIR/all.yaml (what `kubectl apply -k` would send), OUT_DIR/core.yaml (the objects
Kubernetes itself defines, for kubernetes-validate) and OUT_DIR/<kind>/<name>.yaml (one file per
Istio or KEDA object: check-jsonschema reads a single document per file).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

K8S = Path(__file__).resolve().parent
SCHEMAS = K8S / "schemas"

# Custom resources and the schema (deploy/k8s/schemas/<file>.json) each is checked against.
CUSTOM_KINDS = {
    "Gateway": "gateway",
    "VirtualService": "virtualservice",
    "DestinationRule": "destinationrule",
    "PeerAuthentication": "peerauthentication",
    "ScaledObject": "scaledobject",
    "Telemetry": "telemetry",
    "AuthorizationPolicy": "authorizationpolicy",
    "RequestAuthentication": "requestauthentication",
    "EnvoyFilter": "envoyfilter",
    "Certificate": "certificate",
    "Issuer": "issuer",
}


def tool(name: str) -> str:
    """A validation tool: the project venv's own first (the dev dependencies), then PATH
    (kubectl comes with the machine image)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=path)
    if found is None:
        raise FileNotFoundError(f"{name} is neither in {Path(sys.executable).parent} nor on PATH")
    return found


def build(overlay: Path) -> str:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(overlay)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay} failed:\n{result.stderr}")
    return result.stdout


def objects(rendered: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def lay_out(rendered: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "all.yaml").write_text(rendered)
    core = [o for o in objects(rendered) if o["kind"] not in CUSTOM_KINDS]
    (out / "core.yaml").write_text(yaml.safe_dump_all(core, sort_keys=False))
    for obj in objects(rendered):
        if obj["kind"] in CUSTOM_KINDS:
            folder = out / CUSTOM_KINDS[obj["kind"]]
            folder.mkdir(exist_ok=True)
            (folder / f"{obj['metadata']['name']}.yaml").write_text(yaml.safe_dump(obj))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="deploy.k8s.render", description=__doc__)
    parser.add_argument("overlay", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    lay_out(build(args.overlay), args.out)


if __name__ == "__main__":
    main()
