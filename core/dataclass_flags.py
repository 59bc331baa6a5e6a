"""Command-line flags derived from a dataclass's fields, so that a table's options have one owner
(the dataclass) and a new field cannot be forgotten by the script that builds it.

A field's flag is --field-name (or a name given by the caller), its value parsed from the field's
type: int / float / str, a list as space-separated text, bool as a switch, Optional[bool] as 0 or
1. Its help and, optionally, its value checker ("parse", applied to each list item) and choices
come from the field's metadata (`flag_field`). Every flag defaults to None: a flag left out
leaves the field's own default, which the help shows."""
import argparse
import dataclasses
import typing

_SCALARS = (int, float, str)


def flag_field(help_text, default=dataclasses.MISSING, factory=dataclasses.MISSING, parse=None, choices=None):
    """A dataclass field with its flag's help text, value checker (an argparse type) and choices;
    `factory` for a mutable default (a list)."""
    return dataclasses.field(default=default, default_factory=factory,
                             metadata={"help": help_text, "parse": parse, "choices": choices})


def flag_name(field_name, renamed=None):
    return (renamed or {}).get(field_name, "--" + field_name.replace("_", "-"))


def _without_none(kind):
    """Optional[X] -> X (other types unchanged)."""
    params = typing.get_args(kind)
    if typing.get_origin(kind) is typing.Union and type(None) in params:
        rest = [p for p in params if p is not type(None)]
        return rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]
    return kind


def _scalar(kind):
    """The command-line type of a scalar or of a union of types (its first int / float / str), else None."""
    if kind in _SCALARS:
        return kind
    if typing.get_origin(kind) is typing.Union:
        return next((p for p in typing.get_args(kind) if p in _SCALARS), None)
    return None


def _zero_one(text):
    if text not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"'{text}' is not 0 or 1")
    return text == "1"


def _list_of(parse, what):
    def parse_list(text):
        try:
            return [parse(item) for item in text.split()]
        except (ValueError, argparse.ArgumentTypeError) as e:
            raise argparse.ArgumentTypeError(f"'{text}': space-separated {what} ({e})") from None
    return parse_list


def _shown_default(f):
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return None
    if isinstance(value, bool):
        return None if value is False else "on"
    if isinstance(value, list):
        return " ".join(map(str, value)) or None
    return None if value is None else str(value)


def add_dataclass_args(parser, cls, skip=(), renamed=None, shown_defaults=None):
    """One flag per field of `cls` except `skip` (see the module's doc); `shown_defaults` replaces
    a field's default in the help (for fields whose default the caller supplies). A field whose
    type has no flag form is a TypeError: skip it explicitly."""
    hints = typing.get_type_hints(cls)
    shown_defaults = shown_defaults or {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind = _without_none(hints[f.name])
        meta = f.metadata
        shown = shown_defaults.get(f.name, _shown_default(f))
        help_text = (meta.get("help", "") + (f" (default: {shown})" if shown else "")).replace("%", "%%")
        options = {"dest": f.name, "default": None, "help": help_text}
        if kind is bool and hints[f.name] is bool:
            parser.add_argument(flag_name(f.name, renamed), action="store_true", **options)
            continue
        if kind is bool:   # Optional[bool]: None (the field's default) unless set
            options.update(type=_zero_one, metavar="{0,1}")
        else:
            listed = typing.get_origin(kind) is list
            item = _scalar(typing.get_args(kind)[0] if listed else kind)
            if item is None:
                raise TypeError(f"{cls.__name__}.{f.name}: no command-line form for {hints[f.name]}; skip it")
            parse = meta.get("parse") or item
            if listed:
                options.update(type=_list_of(parse, {int: "integers", float: "numbers", str: "values"}[item]),
                               metavar='"A B ..."')
            else:
                options["type"] = parse
                if meta.get("choices"):
                    options["choices"] = meta["choices"]
        parser.add_argument(flag_name(f.name, renamed), **options)


def dataclass_values(args, cls):
    """The fields of `cls` that were set on the command line (flags left out are None)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if getattr(args, f.name, None) is not None}
