"""Read a CloudFormation/SAM template with its short-form intrinsic tags (!Ref, !GetAtt, !Sub...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "template.yaml"


class _TemplateLoader(yaml.SafeLoader):
    """SafeLoader that turns `!Name value` into the long form `{"Fn::Name": value}`."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        logical_id, attribute = value.split(".", 1)
        return {"Fn::GetAtt": [logical_id, attribute]}
    return {f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        loaded = yaml.load(handle, Loader=_TemplateLoader)  # a SafeLoader: no arbitrary objects
    assert isinstance(loaded, dict)
    return loaded


def ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def get_att(logical_id: str, attribute: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [logical_id, attribute]}


def sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}
