"""Print, as JSON, every rule of the workflow as Snakemake parses it for the given config files: its conda env, its
script or shell command and its resources. Run in a subprocess by the tests (parsing the workflow sets environment
variables, e.g. HF_HUB_OFFLINE, that must not leak into the test process).

    python tests/_workflow_rules.py config.yaml config/paper.yaml
"""
import contextlib
import io
import json
import sys
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.settings.types import (ConfigSettings, DeploymentMethod, DeploymentSettings, OutputSettings,
                                      ResourceSettings)

REPO = Path(__file__).resolve().parents[1]


def rules(configfiles: list[str]) -> list[dict]:
    out = []
    with contextlib.redirect_stdout(io.StringIO()), SnakemakeApi(OutputSettings()) as api:
        wapi = api.workflow(
            snakefile=REPO / "Snakefile", workdir=REPO, resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(configfiles=[REPO / c for c in configfiles]),
            deployment_settings=DeploymentSettings(deployment_method={DeploymentMethod.CONDA}))
        for rule in wapi._workflow.rules:
            conda = rule.conda_env
            resources = {k: r.value for k, r in rule.resources.items()
                         if not k.startswith("_") and not r.is_evaluable()}
            out.append({"name": rule.name, "conda": str(conda) if conda else None,
                        "script": str(rule.script) if rule.script else None,
                        "shell": rule.shellcmd, "resources": resources})
    return out


if __name__ == "__main__":
    json.dump(rules(sys.argv[1:]), sys.stdout, indent=1)
