"""PBT with any registered selection rule and transport: ``python -m evo.pbt --rule NAME
[--transport NAME] [--async]``. The presets evo.wta, evo.truncation and
evo.truncation_collective are this with a rule and a transport chosen.

Plugins: ``EVO_PLUGINS=mypkg.rules,mypkg.transports`` imports those modules on every rank first,
so a rule or transport they register can be named here.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence

from evo.cli import exit_process, run_strategy

DESCRIPTION = ("PBT with a selection rule (--rule, default truncation) and a transport (--transport, default "
               "the rule's). Rules and transports registered by modules named in EVO_PLUGINS can be used.")


def main(argv: Sequence[str] | None = None) -> int:
    for name in filter(None, os.environ.get("EVO_PLUGINS", "").split(",")):
        importlib.import_module(name.strip())
    return run_strategy("pbt", argv, DESCRIPTION)


if __name__ == "__main__":
    exit_process(main())
