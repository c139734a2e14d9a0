"""Strict conversion of plain YAML data to frozen config dataclasses, every problem collected as a string."""

import dataclasses
import difflib
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

# Keys of earlier versions: a config that still uses one is told the new spelling.
RENAMED_KEYS = {"load_in_8bit": "quantization (8bit, 4bit or none)"}


def convert(schema: type, data: Any, path: str, problems: list[str]) -> Any:
    """Check `data` against a dataclass, appending every problem found; returns None if any."""
    if not isinstance(data, dict):
        problems.append(f"{path or 'config'}: expected a mapping, got {data!r}")
        return None
    before = len(problems)
    hints = get_type_hints(schema)  # without Annotated: its markers are for doctor, values stay str
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key in data.keys() - fields.keys():
        close = difflib.get_close_matches(key, list(fields), n=1)
        hint = f"; did you mean {path}{close[0]}?" if close else f"; known keys: {', '.join(fields)}"
        if key in RENAMED_KEYS:
            hint = f"; it was renamed: use {path}{RENAMED_KEYS[key]}"
        if "token" in key.lower():  # a config is saved with every run and shared: secrets stay out of it
            hint = "; a Hub token is read only from the HF_TOKEN environment variable, never from a config"
        problems.append(f"{path}{key}: unknown key{hint}")
    values, failed = {}, set()
    for name, spec in fields.items():
        if name in data:
            count = len(problems)
            values[name] = _value(hints[name], data[name], f"{path}{name}", problems)
            if len(problems) > count:  # check the rest of the group with this field's default instead
                failed.add(name)
                del values[name]
                if not _required(spec):
                    values[name] = _default(spec)
        elif _required(spec):
            problems.append(f"{path}{name}: required key is missing")
    if any(_required(spec) and name not in values for name, spec in fields.items()):
        return None
    config = schema(**values)
    if hasattr(config, "problems"):
        problems.extend(
            f"{path}{problem}" for problem in config.problems() if problem.split(":")[0] not in failed
        )
    return None if len(problems) > before else config


def _required(spec: dataclasses.Field) -> bool:
    return spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING


def _default(spec: dataclasses.Field) -> Any:
    return spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()


def _value(hint: Any, value: Any, path: str, problems: list[str]) -> Any:
    """Convert one value to its annotated type, or record why it cannot be."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _value(inner, value, path, problems)
    if dataclasses.is_dataclass(hint):
        return convert(hint, value, f"{path}.", problems)
    if origin is Literal:
        if isinstance(value, bool):  # YAML 1.1 reads `no`, `off`, `yes`, `on` as booleans
            value = next((word for word in _YAML_BOOLEAN_WORDS[value] if word in args), value)
        if value in args:
            return value
        problems.append(f"{path}: {value!r} is not one of {', '.join(map(repr, args))}")
        return None
    if origin is list:
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list, got {value!r}")
            return None
        return [_value(args[0], item, f"{path}[{index}]", problems) for index, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping, got {value!r}")
            return None
        return {str(key): _value(args[1], item, f"{path}.{key}", problems) for key, item in value.items()}
    return _scalar(hint, value, path, problems)


_YAML_BOOLEAN_WORDS = {False: ("no", "off", "false"), True: ("yes", "on", "true")}


def _scalar(hint: type, value: Any, path: str, problems: list[str]) -> Any:
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML reads `5e-5` (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is Any or (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        return value
    problems.append(f"{path}: expected {hint.__name__}, got {value!r}")
    return None
