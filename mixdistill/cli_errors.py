"""Short errors from class instantiation: the setting and the cause, not jsonargparse's Union dump.

When a class named in the config raises in ``__init__`` (a refused checkpoint, an impossible value),
jsonargparse wraps the error in "Does not validate against any of the Union subtypes", a traceback of
~100 lines and the whole resolved config. :func:`unwrap_instantiation_error` digs out the exception the
class raised and prefixes it with the config path of the setting being built, e.g.
``model.init_args.teacher: refused to load '...'``.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType

#: Folder of jsonargparse's sources (frames there are the wrapping, not the cause).
JSONARGPARSE = "jsonargparse"

#: Attribute of an unwrapped error that holds the setting's config path (the console script prints
#: such errors as one line, whatever their type).
SETTING_ATTRIBUTE = "mixdistill_setting"


def chain(err: BaseException) -> list[BaseException]:
    """``err`` and the exceptions it was raised from, outermost first (what Python prints)."""
    out: list[BaseException] = []
    e: BaseException | None = err
    while e is not None and e not in out:
        out.append(e)
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return out


def frames(tb: TracebackType | None) -> Iterator[TracebackType]:
    """The traceback entries of ``tb``, outermost first."""
    while tb is not None:
        yield tb
        tb = tb.tb_next


def raised_in_jsonargparse(err: BaseException) -> bool:
    """Whether the innermost frame of ``err``'s traceback is jsonargparse's own code."""
    entries = list(frames(err.__traceback__))
    return bool(entries) and JSONARGPARSE in entries[-1].tb_frame.f_code.co_filename


def setting_path(errors: list[BaseException]) -> str:
    """The config path (``model.init_args.teacher``) of the nested classes being instantiated."""
    dests: list[str] = []
    for e in errors:
        for tb in frames(e.__traceback__):
            code = tb.tb_frame.f_code
            if code.co_name == "instantiate" and JSONARGPARSE in code.co_filename:
                dest = getattr(tb.tb_frame.f_locals.get("component"), "dest", None)
                if isinstance(dest, str) and (not dests or dests[-1] != dest):
                    dests.append(dest)
    return ".init_args.".join(dests)


def unwrap_instantiation_error(err: BaseException) -> BaseException | None:
    """The error a configured class raised, as a short exception of the same type, or None.

    Args:
        err: What ``parser.instantiate_classes`` raised.

    Returns:
        ``None`` where ``err`` is not jsonargparse's wrapping of another error (leave it as it is);
        otherwise the innermost error, with the setting's config path in front of its message and
        no chain (so Python prints it alone).
    """
    errors = chain(err)
    inner = errors[-1]
    if len(errors) < 2 or not raised_in_jsonargparse(err) or raised_in_jsonargparse(inner):
        return None
    path = setting_path(errors)
    message = f"{path}: {inner}" if path else str(inner)
    try:
        short = type(inner)(message)
    except Exception:  # an exception type that takes other arguments
        short = ValueError(f"{type(inner).__name__}: {message}")
    setattr(short, SETTING_ATTRIBUTE, path)
    return short
