"""Read a YAML config file with its comments (PyYAML drops them; ruamel is not a dependency).

A key's comment is the comment block right above it plus the comment at the end of its line and
the comment-only lines below that align with it (a wrapped trailing comment). The file's leading
comment block is the file's description, and a first line ``# @package X`` names its package.
PyYAML's node marks give each key's line and each value's extent, so a ``#`` inside a quoted
value is never taken for a comment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

PACKAGE_HEADER = re.compile(r"^#\s*@package\s+(\S+)")
COMMENT_START = re.compile(r"(?:^|\s)#")


@dataclass
class KeyDoc:
    key: str            # dotted path from the file's root
    value: Any          # the constructed value (None for a block mapping, whose keys follow)
    source: str | None  # the value as written, when it fits on the key's line
    comment: str
    is_mapping: bool = False


@dataclass
class DefaultsItem:
    entry: str          # as written: "model: smollm2_135m", "override /lora: paper", "_self_"
    group: str | None   # the config group it selects from (None for _self_ or a same-group parent)
    option: Any
    comment: str


@dataclass
class ConfigDoc:
    description: list[str]  # the leading comment block, line by line
    package: str | None
    defaults: list[DefaultsItem] = field(default_factory=list)
    keys: list[KeyDoc] = field(default_factory=list)


def _comment_only(line: str) -> bool:
    return line.lstrip().startswith("#")


def _comment_text(line: str) -> str:
    return line.strip().lstrip("#").strip()


def _trailing(line: str, start: int) -> tuple[str, int] | None:
    """The comment in `line` at or after column `start`, with its column."""
    found = COMMENT_START.search(line, start)
    if found is None:
        return None
    column = line.index("#", found.start())
    return line[column + 1:].strip(), column


class _Reader:
    def __init__(self, text: str):
        self.lines = text.splitlines()
        self.loader = yaml.SafeLoader(text)
        self.consumed: set[int] = set()  # lines already read as a key's wrapped trailing comment
        self.header_end = 0

    def value_of(self, node: yaml.Node) -> Any:
        return self.loader.construct_object(node, deep=True)

    def source_of(self, node: yaml.Node) -> str | None:
        if node.start_mark.line != node.end_mark.line or isinstance(node, yaml.MappingNode | yaml.SequenceNode) \
                and not node.flow_style:
            return None
        return self.lines[node.start_mark.line][node.start_mark.column:node.end_mark.column]

    def line_comment(self, line_no: int, start_column: int) -> str:
        """The trailing comment of a line, with the aligned comment-only lines that continue it."""
        found = _trailing(self.lines[line_no], start_column)
        if found is None:
            return ""
        parts, column = [found[0]], found[1]
        following = line_no + 1
        while following < len(self.lines) and _comment_only(self.lines[following]) \
                and self.lines[following].index("#") == column:
            parts.append(_comment_text(self.lines[following]))
            self.consumed.add(following)
            following += 1
        return " ".join(p for p in parts if p)

    def comment_above(self, line_no: int) -> str:
        parts, above = [], line_no - 1
        while above >= self.header_end and _comment_only(self.lines[above]) and above not in self.consumed:
            parts.insert(0, _comment_text(self.lines[above]))
            above -= 1
        return " ".join(p for p in parts if p)

    def comment_for(self, key: yaml.Node, value: yaml.Node) -> str:
        line = key.start_mark.line
        if value.start_mark.line == line and value.end_mark.line == line:
            start = value.end_mark.column  # after the value: a '#' inside quotes is not a comment
        else:
            start = key.end_mark.column
        trailing = self.line_comment(line, start)
        return " ".join(p for p in (self.comment_above(line), trailing) if p)


def _defaults_item(reader: _Reader, node: yaml.Node) -> DefaultsItem:
    line = node.start_mark.line
    if isinstance(node, yaml.MappingNode):
        (key, value), = node.value
        raw_group = key.value
        option = reader.value_of(value)
        entry = f"{raw_group}: {reader.source_of(value) or option}"
        group = raw_group.removeprefix("override ").lstrip("/").split("@")[0].strip()
        end = value.end_mark.column if value.end_mark.line == line else key.end_mark.column
    else:
        entry, group, option, end = node.value, None, node.value, node.end_mark.column
    comment = " ".join(p for p in (reader.comment_above(line), reader.line_comment(line, end)) if p)
    return DefaultsItem(entry=entry, group=group, option=option, comment=comment)


def _walk(reader: _Reader, mapping: yaml.MappingNode, prefix: str, out: list[KeyDoc]) -> None:
    for key, value in mapping.value:
        path = f"{prefix}{key.value}"
        comment = reader.comment_for(key, value)
        if isinstance(value, yaml.MappingNode) and not value.flow_style and value.value:
            out.append(KeyDoc(path, None, None, comment, is_mapping=True))
            _walk(reader, value, f"{path}.", out)
        else:
            out.append(KeyDoc(path, reader.value_of(value), reader.source_of(value), comment))


def read_config(text: str) -> ConfigDoc:
    """The description, package, defaults list and documented keys of one config file."""
    reader = _Reader(text)
    package = None
    while reader.header_end < len(reader.lines) and _comment_only(reader.lines[reader.header_end]):
        reader.header_end += 1
    header = reader.lines[:reader.header_end]
    if header and (match := PACKAGE_HEADER.match(header[0].strip())):
        package, header = match.group(1), header[1:]
    doc = ConfigDoc(description=[h.strip()[1:].rstrip().removeprefix(" ") for h in header], package=package)
    root = reader.loader.get_single_node()
    if root is None:
        return doc
    if not isinstance(root, yaml.MappingNode):
        raise ValueError("a config file must hold a mapping at its top level")
    for key, value in root.value:
        if key.value == "defaults" and isinstance(value, yaml.SequenceNode):
            doc.defaults = [_defaults_item(reader, item) for item in value.value]
        else:
            _walk(reader, yaml.MappingNode(root.tag, [(key, value)]), "", doc.keys)
    return doc
