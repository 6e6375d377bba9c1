"""Every error modgraph raises on purpose.

Each message says what was asked, what exists, and what to do next; the CLI prints
them as one line, without a traceback.
"""

from __future__ import annotations


class ModgraphError(Exception):
    """Base class: an error a user can act on."""


class PluginError(ModgraphError):
    """A plugin failed to load or registered something invalid."""


class DuplicateModalityError(PluginError):
    """Two distributions registered the same modality name."""


class UnknownModalityError(ModgraphError):
    """A modality name that no installed plugin provides, or that is not in the registry."""


class NotInRegistryError(ModgraphError):
    """A modality or associator that has not been trained into the registry yet."""


class NoRouteError(ModgraphError):
    """No chain of associators leads from the source to the target."""


class RegistryCorruptError(ModgraphError):
    """A registry file is unreadable or does not match its plugin's architecture."""


class DataNotFoundError(ModgraphError):
    """A dataset is not on disk where the loader looked."""


class FeatureCacheError(ModgraphError):
    """A feature cache shard is damaged or gone (a build rewrites it)."""


class InputFileError(ModgraphError):
    """A user's input file cannot be read as the modality's kind of data."""


class ConfigError(ModgraphError):
    """An option or configuration value is invalid."""


class PairingError(ModgraphError):
    """Two modalities share no classes to pair."""


class TrainingDivergedError(ModgraphError):
    """Training produced NaN or infinite values; nothing was saved."""


def validation_message(what: str, exc, known=None) -> str:
    """A pydantic ``ValidationError`` as one line: "invalid WHAT: field: message; ...".

    Unknown fields name the known ones, so the line says what to type instead.
    """
    listed = f" (known: {', '.join(known)})" if known else " (there are none)" if known is not None else ""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "value"
        if err.get("type") == "extra_forbidden":
            msg = "not a known setting" + listed
        else:
            msg = err.get("msg", "invalid")
            if err.get("input") is not None and err.get("type") not in ("missing",):
                msg += f", got {str(err['input'])[:40]!r}" if isinstance(err["input"], str) else \
                    f", got {str(err['input'])[:40]}"
        parts.append(f"{loc}: {msg}")
    return f"invalid {what}: " + "; ".join(parts)


class ArchiveError(ModgraphError):
    """An archive to import is malformed, unsafe, does not match its manifest, or would overwrite trained files."""


class DeviceOutOfMemoryError(ModgraphError):
    """The GPU ran out of memory; nothing was saved (a smaller batch or the CPU is the way on)."""


class OutputPathError(ModgraphError):
    """A path named as an output is not, and cannot become, a regular file of ours (a device, a FIFO, a folder...)."""


class RegistryMismatchError(ModgraphError):
    """A job was given another registry than the one planned, or one whose nodes another plugin major version wrote."""


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text, keep: str = "") -> str:
    """``text`` safe to print on a terminal: every character that is not printable, shown escaped.

    Control characters and terminal escapes (``\\x1b[...``), bidirectional overrides and other
    invisible format characters become ``\\xNN``/``\\uNNNN``; a byte of a non-UTF-8 file name
    (decoded by Python as a lone surrogate) becomes the ``\\xNN`` of that byte. Characters in
    ``keep`` (say ``"\\n"`` for a multi-line card) stay as they are. Everything modgraph prints
    from a file, a header or a name goes through this one function.
    """
    text = str(text)
    if text.isprintable():
        return text
    out = []
    for c in text:
        if c.isprintable() or c in keep:
            out.append(c)
        elif c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif "\udc80" <= c <= "\udcff":  # os.fsdecode's stand-in for an undecodable byte
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        else:
            code = ord(c)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def did_you_mean(name: str, known) -> str:
    """``"; did you mean 'x'?"`` for the known name closest to ``name`` (difflib), or an empty string."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
