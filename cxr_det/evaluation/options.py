"""The evaluation's options, from the one table :data:`cxr_det.config.CXR_EVAL_OPTIONS`.

That table (pure data, in the config module) names each option, the protocol that reads it,
its default, type, choices and help. From it come, without listing the options again:

- the config keys ``TEST.CXR_EVAL.<NAME>`` (:func:`cxr_det.config.add_cxr_eval_config`);
- :class:`EvalOptions`, a frozen dataclass with one field per option, which checks and
  normalises the values (types, choices, minimum) and reads ``cfg.TEST.CXR_EVAL``;
- the ``tools/evaluate.py`` flags (:func:`add_option_flags`, :func:`options_from_args`).
"""
import argparse
import dataclasses
import logging
from typing import Dict, Optional, Tuple

import numpy as np

from cxr_det.config import CXR_EVAL_OPTIONS, CXR_EVAL_PROTOCOLS

__all__ = ["EvalOptions", "OPTIONS", "add_option_flags", "options_from_args", "flag_name", "config_key"]

logger = logging.getLogger(__name__)

# name -> table entry, in the table's order.
OPTIONS: Dict[str, dict] = {option["name"]: option for option in CXR_EVAL_OPTIONS}
_TYPES = {"float": float, "int": int, "str": str, "bool": bool}
_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def config_key(name: str) -> str:
    """``"froc_iou"`` -> ``"TEST.CXR_EVAL.FROC_IOU"``: the config key of an option."""
    return f"TEST.CXR_EVAL.{name.upper()}"


def flag_name(name: str) -> str:
    """The ``tools/evaluate.py`` flag of an option: its ``flag`` entry, else ``--<name-with-dashes>``."""
    return OPTIONS[name].get("flag") or "--" + name.replace("_", "-")


def _annotation(option: dict):
    kind = _TYPES[option["type"]]
    if option.get("many"):
        return Tuple[kind, ...]
    return Optional[kind] if "none_below" in option else kind


def _check_value(option: dict, value):
    """One value of an option, converted to its type and checked; raises ValueError naming
    the option and its config key."""
    name, kind = option["name"], _TYPES[option["type"]]
    where = f"{name} ({config_key(name)})"
    if kind is bool and isinstance(value, str):
        if value.lower() not in _BOOL_WORDS:
            raise ValueError(f"{where} must be true or false, got {value!r}")
        value = _BOOL_WORDS[value.lower()]
    try:
        value = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be of type {option['type']}, got {value!r}") from None
    if kind is str and option.get("choices"):
        value = value.lower()
        if value not in option["choices"]:
            raise ValueError(f"{where} must be one of {list(option['choices'])}, got {value!r}")
    if "minimum" in option and value < option["minimum"]:
        raise ValueError(f"{where} must be >= {option['minimum']}, got {value!r}")
    return value


def _normalise(option: dict, value):
    """An option's value as :class:`EvalOptions` stores it (tuples for list options)."""
    if option.get("many"):
        values = [value] if isinstance(value, (str, int, float)) else list(np.atleast_1d(value).tolist())
        if option["name"] == "protocols":
            unknown = sorted({str(v).lower() for v in values} - set(CXR_EVAL_PROTOCOLS))
            if unknown:
                raise ValueError(f"unknown evaluation protocol(s) {unknown}; choose from {list(CXR_EVAL_PROTOCOLS)}")
        return tuple(_check_value(option, v) for v in values)
    if "none_below" in option and (value is None or int(value) < option["none_below"]):
        return None
    return _check_value(option, value)


def _post_init(self):
    for f in dataclasses.fields(self):
        object.__setattr__(self, f.name, _normalise(OPTIONS[f.name], getattr(self, f.name)))


def _from_cfg(cls, cfg=None, **overrides):
    """Options from ``cfg.TEST.CXR_EVAL`` (defaults where a key is absent, and for
    ``cfg=None``), then ``overrides`` (keyword arguments that are not None). Raises
    TypeError for an unknown option name and ValueError for a bad value."""
    values = {}
    node = cfg.TEST.get("CXR_EVAL") if cfg is not None else None
    if cfg is not None and node is None:
        logger.warning("cfg.TEST.CXR_EVAL is missing (add_cxr_eval_config not called): default options")
    if node is not None:
        for name in OPTIONS:
            if name.upper() in node:
                values[name] = node[name.upper()]
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**values)


def _doc() -> str:
    lines = [
        "What :func:`~cxr_det.evaluation.core.evaluate_detections` computes: one field per entry",
        "of :data:`cxr_det.config.CXR_EVAL_OPTIONS` (mirrors ``cfg.TEST.CXR_EVAL``), frozen.",
        "",
        "Values are converted to the option's type (list options to tuples, a single value",
        "accepted) and checked against its choices and minimum: ValueError names the option",
        "and its config key. ``EvalOptions.from_cfg(cfg, **overrides)`` reads a config.",
        "",
    ]
    for option in CXR_EVAL_OPTIONS:
        lines.append(f"{option['name']} (default {option['default']!r}): {option['help']}")
    return "\n".join(lines)


EvalOptions = dataclasses.make_dataclass(
    "EvalOptions",
    [
        (o["name"], _annotation(o), dataclasses.field(default=o["default"]))
        for o in CXR_EVAL_OPTIONS
    ],
    frozen=True,
    namespace={"__post_init__": _post_init, "from_cfg": classmethod(_from_cfg), "__doc__": _doc()},
)
EvalOptions.__module__ = __name__


def add_option_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add one flag per option to ``parser`` (``--<name-with-dashes>`` or the option's
    ``flag``; defaults the option's, or its ``flag_default``). Returns ``parser``; read the
    parsed flags with :func:`options_from_args`."""
    for option in CXR_EVAL_OPTIONS:
        name, flag = option["name"], flag_name(option["name"])
        default = option.get("flag_default", option["default"])
        helptext = option["help"].replace("%", "%%")
        if option.get("flag_choices"):
            words = option["flag_choices"]
            default_word = next(word for word, value in words.items() if value == default)
            parser.add_argument(flag, dest=name, choices=list(words), default=default_word, help=helptext)
        elif option["type"] == "bool":
            action = "store_false" if flag.startswith("--no-") else "store_true"
            parser.add_argument(flag, dest=name, action=action, default=default, help=helptext)
        else:
            kwargs = dict(type=_TYPES[option["type"]], help=helptext)
            if option.get("choices"):
                kwargs["choices"] = list(option["choices"])
            if option.get("many"):
                kwargs["nargs"] = "+"
                default = list(default)
            parser.add_argument(flag, dest=name, default=default, **kwargs)
    return parser


def options_from_args(args: argparse.Namespace, **overrides) -> "EvalOptions":
    """:class:`EvalOptions` from flags added by :func:`add_option_flags`, then ``overrides``
    (keyword arguments that are not None)."""
    values = {}
    for option in CXR_EVAL_OPTIONS:
        value = getattr(args, option["name"])
        if option.get("flag_choices"):
            value = option["flag_choices"][value]
        values[option["name"]] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    return EvalOptions(**values)
