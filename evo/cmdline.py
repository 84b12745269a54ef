"""The command line of a config dataclass, built in one place: ``--snake-case`` flags from the
fields (help from ``metadata["help"]``, ``--flag/--no-flag`` for booleans, choices the caller knows),
parsing into the dataclass with one-line errors, and saving the resolved config."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_type_hints

from evo.errors import ConfigError

if TYPE_CHECKING:
    from evo.config import CommonConfig

C = TypeVar("C", bound="CommonConfig")



class _CollectAction(argparse.Action):
    """A repeatable flag of several tokens (``--env-kwargs``, ``--wrapper``): each use is parsed and
    added to the previous ones (``evo.envs.collect_flag``)."""

    def __call__(self, parser: Any, ns: argparse.Namespace, values: Any, option: str | None = None) -> None:
        from evo.envs import collect_flag

        setattr(ns, self.dest, collect_flag(self.dest, getattr(ns, self.dest, None), values))


def _base_type(tp: Any) -> tuple[type, bool]:
    """(underlying type, optional?) of a field annotation like ``int | None``."""
    args = getattr(tp, "__args__", None)
    if args:
        non_none = [a for a in args if a is not type(None)]
        return non_none[0], len(non_none) != len(args)
    return tp, False


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except where the help text already explains them."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action) or text


def build_parser(cls: type[CommonConfig], prog: str, description: str,
                 choices: Mapping[str, Sequence[str]] | None = None) -> argparse.ArgumentParser:
    """The command line of ``cls``; ``choices``: allowed values of some fields (registries the
    caller knows, e.g. the transports)."""
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=_HelpFormatter)
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True):
            continue
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        tp, _optional = _base_type(hints[f.name])
        help_text = f.metadata.get("help", "")
        if "nargs" in f.metadata:
            factory: Any = f.default_factory
            parser.add_argument(flag, dest=f.name, action=_CollectAction, nargs=f.metadata["nargs"], help=help_text,
                                default=factory(), metavar=f.metadata["metavar"])
        elif tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=f.default, help=help_text)
        else:
            opts = (choices or {}).get(f.name)
            parser.add_argument(flag, dest=f.name, type=tp, default=f.default, help=help_text,
                                **({"choices": list(opts)} if opts else {"metavar": f.name.upper()}))
    return parser


def parse(cls: type[C], argv: Sequence[str] | None, prog: str, description: str,
          choices: Mapping[str, Sequence[str]] | None = None, **fixed: Any) -> C:
    """Parse ``argv`` into ``cls``; a bad flag or value is a :class:`ConfigError` (one line)."""
    parser = build_parser(cls, prog, description, choices)

    def error(message: str) -> Any:
        raise ConfigError(message)

    parser.error = error  # type: ignore[method-assign]
    ns = parser.parse_args(argv)
    values = {k: v for k, v in vars(ns).items()}
    values.update(fixed)
    cfg = cls(**values)
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"--{f.name.replace('_', '-')} must be a finite number")
    return cfg


def explicit_flags(cls: type[CommonConfig], argv: Sequence[str] | None) -> set[str]:
    """Field names whose flags appear in ``argv`` (so a named set does not override them)."""
    parser = build_parser(cls, "evo", "")
    parser.argument_default = argparse.SUPPRESS
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    ns, _ = parser.parse_known_args(argv)
    return set(vars(ns))


def save_config(cfg: CommonConfig, path: Path, extra: dict[str, Any] | None = None) -> None:
    """Write the resolved configuration as JSON (atomically)."""
    from evo.records import atomic_write_text

    data = {"config": cfg.to_dict(), **(extra or {})}
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
