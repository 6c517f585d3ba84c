"""Params files as DVC reads them (ruamel.yaml, YAML 1.2, duplicate keys refused, aliases bounded); errors name the
file and line. A preset's composition onto the file it `extends`, and the schema that checks the values, are
weakalign.config.params."""

from __future__ import annotations

from pathlib import Path

class ParamsError(ValueError):
    """A bad params file; the message names the key."""



# Params files are read as DVC reads them (dvc.utils.serialize._yaml: ruamel.yaml, YAML 1.2, duplicate keys refused),
# so that a value cannot mean one thing to DVC's run cache and another to the stages: PyYAML (YAML 1.1) reads
# `n_test: 010` as 8 and `yes` as true, where DVC records 10 and "yes".
MAX_YAML_VALUES = 100_000  # values after expanding aliases: params.yaml has about 300


def _expanded_values(root) -> int:
    """How many values the document holds once every alias is expanded (an anchor used twice counts twice), without
    expanding it: a few hundred bytes of nested aliases (a "billion laughs") expand to billions of values."""
    from ruamel.yaml.nodes import MappingNode, SequenceNode

    memo: dict[int, int] = {}
    # Iterative post-order walk: a node's size is 1 + its children's, each shared node computed once.
    stack: list[tuple[object, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, done = stack.pop()
        if isinstance(node, MappingNode):
            children = [n for kv in node.value for n in kv]
        elif isinstance(node, SequenceNode):
            children = list(node.value)
        else:
            children = []
        if done:
            on_path.discard(id(node))
            memo[id(node)] = min(1 + sum(memo[id(c)] for c in children), MAX_YAML_VALUES + 1)
            continue
        if id(node) in memo:
            continue
        if id(node) in on_path:
            raise ValueError(f"line {node.start_mark.line + 1}: an alias that contains itself")
        on_path.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in memo)
    return memo[id(root)]


def parse_yaml(text: str, source: str):
    """YAML text as DVC reads it; ParamsError naming `source` (and the line) for anything DVC would read otherwise
    or choke on: invalid YAML, duplicate keys, aliases that expand past MAX_YAML_VALUES values."""
    from ruamel.yaml import YAML, YAMLError
    from ruamel.yaml.error import MarkedYAMLError

    def reader():
        return YAML(typ="safe", pure=True)

    try:
        root = reader().compose(text)
        if root is None:
            return None
        try:
            n = _expanded_values(root)
        except ValueError as e:
            raise ParamsError(f"{source}: not valid params ({e})") from None
        if n > MAX_YAML_VALUES:
            raise ParamsError(f"{source}: its aliases expand to more than {MAX_YAML_VALUES:,} values; a params file "
                              "holds a few hundred (an alias bomb?)")
        return reader().load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = (e.problem or str(e)).split("\n")[0]
        raise ParamsError(f"{source}{where}: not valid YAML ({problem})") from None
    except YAMLError as e:
        raise ParamsError(f"{source}: not valid YAML ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
            from None
    except RecursionError:
        raise ParamsError(f"{source}: nested too deeply to be a params file") from None


def read_yaml(path: str | Path):
    """A params file, read as DVC reads it (parse_yaml); ParamsError naming the file (and line) otherwise."""
    path = Path(path)
    if path.is_dir():
        raise ParamsError(f"{path}: is a directory, not a file")
    if path.exists() and not path.is_file():  # a FIFO or a device would block or never end
        raise ParamsError(f"{path}: not a regular file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ParamsError(f"{path}: cannot read it ({e})") from None
    return parse_yaml(text, str(path))
