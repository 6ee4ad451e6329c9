"""docs/kubernetes.md's manifests parse, and the names, ports and labels its text relies on agree.

``kubectl apply --dry-run=client`` needs an API server even on the client side, so the YAML is checked here.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import typer.main
import yaml

from joulescore.meters.presets import PRESETS, parse_selector

DOC = Path(__file__).resolve().parents[1] / "docs" / "kubernetes.md"


def _manifests() -> dict[str, dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)
    docs = [d for b in blocks for d in yaml.safe_load_all(b) if d]
    return {d["kind"]: d for d in docs}


def test_the_manifests_parse_and_agree() -> None:
    found = _manifests()
    assert set(found) == {"Deployment", "Service", "ServiceMonitor"}
    deploy, service, monitor = found["Deployment"], found["Service"], found["ServiceMonitor"]
    pod = deploy["spec"]["template"]
    assert deploy["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    sidecar = containers["joulescore"]
    assert sidecar["command"] == ["joulescore", "proxy"]
    flags = dict(a.removeprefix("--").split("=", 1) for a in sidecar["args"])
    assert flags["meter"] == "prometheus" and flags["preset"] in PRESETS
    assert {m[0] for m in parse_selector(flags["selector"])} == {"pod", "namespace"}
    assert {e["name"] for e in sidecar["env"]} >= {"POD_NAME", "POD_NAMESPACE"}
    # the proxy forwards to vLLM on loopback, on the port vLLM listens on
    vllm_args = containers["vllm"]["args"]
    assert flags["upstream"] == f"http://127.0.0.1:{vllm_args[vllm_args.index('--port') + 1]}"
    listen_port = int(flags["listen"].rsplit(":", 1)[1])
    named = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    assert named["http"] == listen_port
    # the Service reaches the sidecar's port; the ServiceMonitor selects the Service and scrapes /metrics
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    # the grace period covers the proxy's wait for the last sample
    from joulescore.proxy.session import FINAL_SAMPLE_WAIT_S

    assert pod["spec"]["terminationGracePeriodSeconds"] > FINAL_SAMPLE_WAIT_S


def test_the_commands_in_the_text_name_real_flags() -> None:
    from joulescore.cli.app import app

    text = DOC.read_text()
    joined = text.replace("\\\n", " ")  # a command continued on the next line
    commands = [shlex.split(line) for line in re.findall(r"^joulescore [^\n]*", joined, flags=re.M)]
    assert len(commands) == 3
    click_app = typer.main.get_command(app)
    for argv in commands:
        sub = click_app.commands[argv[1]]  # type: ignore[attr-defined]
        known = {o for p in sub.params for o in p.opts}
        words = argv[2:argv.index("--")] if "--" in argv else argv[2:]  # after --: the measured command's
        for word in words:
            if word.startswith("--"):
                assert word.split("=")[0] in known, (argv[1], word)
    assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" in text and "pod=" in text
