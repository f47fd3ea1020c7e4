"""The params.yaml keys dvc.yaml's stages declare, and whether a params file carries them.

Snakemake fills every key params.yaml leaves out from the schema's defaults; DVC cannot: a stage that
declares ``analysis`` or ``evaluation.threshold`` stops (``Parameters ... are missing from 'params.yaml'``)
when the file lacks it, possibly hours into ``dvc repro``. So:

* :func:`declared_params` reads the keys every stage declares (``foreach`` stages expanded the way DVC does);
* :func:`missing_params` says which of them a params file lacks;
* :func:`check_params_for_dvc` turns that into one line naming the keys and what to add; the CLI calls it at
  the start of every step DVC runs (``$DVC_STAGE`` set), ``beadseg validate`` and ``beadseg sync to-dvc``
  call it too, so nothing trains or is rewritten before the file is fixed.

Pure functions over the parsed YAML; nothing here opens a file except :func:`check_params_for_dvc`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from beadseg.errors import ConfigError

#: DVC's default params file: a stage's params entry given as a plain string refers to it.
DEFAULT_PARAMS_FILE = "params.yaml"
_VAR = re.compile(r"\$\{\s*([A-Za-z0-9_.@-]+)\s*\}")
_MISSING = object()


def lookup(tree: Any, dotted: str) -> Any:
    """The value at ``a.b.c`` in nested mappings, or the module's ``_MISSING`` marker."""
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _interpolate(text: str, scope: Mapping[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        found = lookup(scope, match.group(1))
        if found is _MISSING or isinstance(found, Mapping | list):
            raise ConfigError(f"dvc.yaml: cannot resolve ${{{match.group(1)}}} in {text!r} (a missing params key, or "
                              "not a plain value)")
        return str(found)

    return _VAR.sub(value, text)


def _iterations(stage_name: str, foreach: Any, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The ``key`` / ``item`` scopes of one ``foreach`` stage (a dict gives key + item, a list gives item)."""
    if isinstance(foreach, str):
        match = _VAR.fullmatch(foreach.strip())
        if not match:
            raise ConfigError(f"dvc.yaml: stage {stage_name}: foreach {foreach!r} is not a ${{params key}}")
        collection = lookup(params, match.group(1))
        if collection is _MISSING:
            raise ConfigError(f"dvc.yaml: stage {stage_name} iterates over {match.group(1)}, which the params file "
                              f"lacks: add {match.group(1)} (e.g. {{}} when empty)")
    else:
        collection = foreach
    if isinstance(collection, Mapping):
        for key, item in collection.items():
            yield {"key": key, "item": item}
    elif isinstance(collection, list):
        for item in collection:
            yield {"item": item}
    elif collection is not None:
        raise ConfigError(f"dvc.yaml: stage {stage_name}: foreach must be a mapping or a list, got "
                          f"{type(collection).__name__}")


def _param_keys(entries: Any, scope: Mapping[str, Any]) -> Iterator[str]:
    """Keys of ``params.yaml`` in one stage's ``params:`` list (entries for other files are skipped)."""
    for entry in entries or []:
        if isinstance(entry, str):
            yield _interpolate(entry, scope)
        elif isinstance(entry, Mapping):
            for file, keys in entry.items():
                if _interpolate(str(file), scope) == DEFAULT_PARAMS_FILE:
                    yield from (_interpolate(str(k), scope) for k in keys or [])


def declared_params(dvc: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every params.yaml key each stage of a parsed dvc.yaml declares: ``{stage name: [dotted keys]}``.

    ``foreach`` stages are expanded over the params file's collections (``train@<run id>``), so
    ``runs.${key}`` becomes one key per run, as DVC resolves it."""
    out: dict[str, list[str]] = {}
    stages = dvc.get("stages") or {}
    if not isinstance(stages, Mapping):
        raise ConfigError("dvc.yaml: `stages` is not a mapping")
    for name, stage in stages.items():
        if not isinstance(stage, Mapping):
            raise ConfigError(f"dvc.yaml: stage {name} is not a mapping")
        if "foreach" in stage:
            body = stage.get("do") or {}
            for scope in _iterations(str(name), stage["foreach"], params):
                suffix = scope.get("key", scope["item"])
                out[f"{name}@{suffix}"] = list(_param_keys(body.get("params"), {**params, **scope}))
        else:
            out[str(name)] = list(_param_keys(stage.get("params"), params))
    return out


def missing_params(dvc: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    """The declared keys the params file lacks, each once, in the order stages declare them."""
    missing: list[str] = []
    for keys in declared_params(dvc, params).values():
        missing += [k for k in keys if k not in missing and lookup(params, k) is _MISSING]
    return missing


def schema_default(dotted: str) -> Any:
    """The schema's default of a params key (``{}`` for a section), or None where the schema has none."""
    from beadseg.config import schema

    node: Mapping[str, Any] = schema()
    for part in dotted.split("."):
        props = node.get("properties", {})
        if part not in props:
            return None
        node = props[part]
    if "default" in node:
        return node["default"]
    return {} if node.get("type") == "object" else None


def check_params_for_dvc(params: Mapping[str, Any], params_file: str | Path,
                         dvc_file: str | Path = "dvc.yaml") -> None:
    """Raise one ConfigError if ``params`` (the parsed ``params_file``) lacks a key ``dvc_file`` declares.

    No dvc.yaml (a project run by Snakemake alone) is fine. The message names each missing key with the
    value to add (the schema's default, which is what Snakemake has been using)."""
    import yaml

    dvc_path = Path(dvc_file)
    if not dvc_path.is_file():
        return
    try:
        dvc = yaml.safe_load(dvc_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{dvc_path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    missing = missing_params(dvc, params)
    if missing:
        named = [k for k in missing if not any(o.startswith(k + ".") for o in missing)]
        raise ConfigError(f"{params_file} lacks {', '.join(named)}, which {dvc_path} declares as stage params "
                          f"(DVC needs them in the file; Snakemake used the defaults): add {to_add(missing)}")


def to_add(missing: list[str]) -> str:
    """The YAML to add for missing keys, one flow mapping per top-level section, with the schema's defaults:
    ``evaluation: {threshold: 0.5}; analysis: {}``."""
    import yaml

    deepest = [k for k in missing if not any(o.startswith(k + ".") for o in missing)]
    tree: dict[str, Any] = {}
    for key in deepest:
        *parents, last = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        default = schema_default(key)
        node[last] = "<a value>" if default is None else default
    return "; ".join(str(yaml.safe_dump({k: v}, default_flow_style=True, width=10_000, sort_keys=False)).strip()
                     .removeprefix("{").removesuffix("}") for k, v in tree.items())
