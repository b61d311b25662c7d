"""The SAM template as the deploy tests read it, and the template checks' fan-out module (``deploy/aws/fan_out.py``).

The template is read as YAML (CloudFormation short tags such as ``!Ref`` become plain mappings); the full
translation and lint is ``make template``, in its own virtual environment.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "aws"
TEMPLATE = DEPLOY / "template.yaml"

__all__ = ["TEMPLATE", "fan_out_module", "function_properties", "load_template"]


class _CloudFormationLoader(yaml.SafeLoader):
    """A safe loader that reads ``!Ref x`` as ``{"Ref": "x"}`` and ``!Sub s`` as ``{"Fn::Sub": "s"}``."""


def _short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node for !{suffix}", node.start_mark)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _short_tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """Return the SAM template at ``path`` with its short tags as intrinsic-function mappings."""
    loaded: dict[str, Any] = yaml.load(path.read_text(encoding="utf-8"), Loader=_CloudFormationLoader)
    return loaded


def function_properties(template: dict[str, Any], name: str) -> dict[str, Any]:
    """Return the function's properties over the template's Globals (environment variables merged)."""
    shared: dict[str, Any] = template.get("Globals", {}).get("Function", {})
    own: dict[str, Any] = template["Resources"][name]["Properties"]
    merged = {**shared, **own}
    variables = {
        **shared.get("Environment", {}).get("Variables", {}),
        **own.get("Environment", {}).get("Variables", {}),
    }
    merged["Environment"] = {"Variables": variables}
    return merged


@functools.cache
def fan_out_module() -> ModuleType:
    """Import ``deploy/aws/fan_out.py``, the fan-out check ``make template`` runs on the translated template."""
    name = "scalpbot_deploy_fan_out"
    spec = importlib.util.spec_from_file_location(name, DEPLOY / "fan_out.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
