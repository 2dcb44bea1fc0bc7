"""Short class names on the command line: ``--model.help DistillModule``, ``--model DistillModule``.

jsonargparse resolves a bare class name to the one *imported* subclass of the setting's type with that
name; a class is imported only once a config names its full path. :func:`import_configurable_classes`
imports mixdistill's modules of configurable classes up front, so that short names work everywhere
jsonargparse accepts them (``--model``, ``--data``, ``--model.init_args.teacher``, their ``.help``).
"""

from __future__ import annotations

import importlib
import pkgutil

#: Packages and modules whose classes appear in configs (models, data, teachers, nets, objectives...).
CONFIGURABLE = (
    "mixdistill.module",
    "mixdistill.teacher_module",
    "mixdistill.generation",
    "mixdistill.student",
    "mixdistill.data",
    "mixdistill.teachers",
    "mixdistill.nets",
    "mixdistill.processes",
    "mixdistill.di4c",
    "mixdistill.injection",
    "mixdistill.metrics",
    "mixdistill.evaluation",
    "mixdistill.callbacks",
    "mixdistill.sampling",
)


def import_configurable_classes(names: tuple[str, ...] = CONFIGURABLE) -> list[str]:
    """Import ``names`` and every module inside those that are packages.

    A module whose optional dependency is missing is skipped (its classes still work by full path
    once the dependency is installed). Returns the modules imported.
    """
    done: list[str] = []
    for name in names:
        package = importlib.import_module(name)
        done.append(name)
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), f"{name}."):
            try:
                importlib.import_module(info.name)
            except ImportError:
                continue
            done.append(info.name)
    return done
