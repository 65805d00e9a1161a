"""YAML that cannot make the loader recurse without end, hang, or blow up memory.

PyYAML builds whatever a document asks for. An anchor holding an alias to itself
(``agents: &r {w: {env: *r}}``) makes a self-containing dict that every later walk follows
forever; a "billion laughs" (9 levels of 9 aliases, a few hundred bytes) is nine to the ninth
values once anything copies it; 3,000 nested ``[`` recurse through the composer past Python's
stack; ``replicas:`` with 5,000 digits is a ``ValueError`` in ``int()``. The loader here counts
while it *composes*, before a single value is built:

- nesting deeper than ``MAX_DEPTH`` is refused at the node that crosses it;
- every node counts once per place it appears, an alias as the whole subtree it stands for,
  and a document over ``MAX_NODES`` values or ``MAX_TEXT`` characters is refused: the size
  after expansion is what every later step pays (3,000 aliases of one 100 KB string took 83 s
  to interpolate), so a bomb stops at the alias that crosses the budget;
- an alias inside its own anchor is refused, naming the anchor;
- duplicate keys are refused (a set, not a list scan: 20,000 keys stay linear);
- a plain key that YAML 1.1 reads as a boolean (``on``, ``off``, ``yes``, ``no``) stays the
  text it is, as in YAML 1.2 and compose: an agent's ``on:`` (its hooks) is not ``True:``;
- a value that its tag's constructor cannot build (``2001-13-45``, ``!!int x``, 100+ digit
  integers) is a YAML error at its line and column instead of a ``ValueError``.

libyaml scans and parses when it is there (three times faster: 20,000 keys in 0.4 s, not 1.2 s);
composing and constructing stay in Python, so every bound above holds either way. A syntax
error is read again by PyYAML's own parser, whose messages the fixtures pin (and which has the
last word: what it accepts, corral accepts).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent, ScalarEvent
from yaml.nodes import MappingNode, Node, ScalarNode

MAX_DEPTH = 64  # a real manifest nests ~8 deep (agents.web.readiness.http.status[0])
MAX_NODES = 100_000  # values after alias expansion; 1,000 agents with 10 variables is ~30,000
MAX_TEXT = 4 << 20  # characters of scalars after alias expansion (the file itself is <= 1 MiB)
_BOOL, _STR = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:str"
MAX_INT_DIGITS = 100  # every number in a manifest fits in 20


class BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._bounds()

    def _bounds(self) -> None:
        self._depth = 0
        self._nodes = 0
        self._text = 0
        self._sizes: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, characters), expanded
        self._open: set[str] = set()  # anchors whose node is being composed

    def _count(self, nodes: int, text: int, mark: Any) -> None:
        self._nodes += nodes
        self._text += text
        if self._nodes > MAX_NODES:
            raise ComposerError(None, None, f"the document has more than {MAX_NODES:,} values "
                                "once its aliases are expanded (an alias bomb?); write fewer "
                                "or smaller aliases", mark)
        if self._text > MAX_TEXT:
            raise ComposerError(None, None, f"the document has more than {MAX_TEXT >> 20} MiB "
                                "of text once its aliases are expanded (write fewer aliases "
                                "of long values)", mark)

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, AliasEvent):
            name = str(event.anchor)
            if name in self._open:
                raise ComposerError(None, None, f"alias *{name} is inside its own anchor "
                                    f"&{name} (a recursive alias; refer to a value defined "
                                    "elsewhere)", mark)
            self._count(*self._sizes.get(name, (1, 0)), mark)
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep "
                                "(flatten this value)", mark)
        anchor: str | None = getattr(event, "anchor", None)
        before = (self._nodes, self._text)
        self._count(1, len(event.value) if isinstance(event, ScalarEvent) else 0, mark)
        if anchor is not None:
            self._open.add(anchor)
        self._depth += 1
        node = super().compose_node(parent, index)
        self._depth -= 1
        if anchor is not None:
            self._open.discard(anchor)
            self._sizes[anchor] = (self._nodes - before[0], self._text - before[1])
        return node

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, OverflowError, KeyError, TypeError) as exc:
            # a tag's constructor failed on its text: 2001-13-45, !!int x, !!bool maybe
            tag = node.tag.rsplit(":", 1)[-1]
            text = f" {node.value[:40]!r}" if isinstance(node, ScalarNode) else ""
            raise ConstructorError(None, None, f"cannot read{text} as {tag}: {exc} (quote it "
                                   "to keep it as text)", node.start_mark) from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if (key_node.tag == _BOOL and isinstance(key_node, ScalarNode)
                    and not key_node.style):  # plain: libyaml says "", PyYAML None
                key_node.tag = _STR
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable: SafeConstructor reports it with its mark
            if duplicate:
                message = f"duplicate key {key!r} (remove or rename one)"
                raise ConstructorError(None, None, message, key_node.start_mark)
        return super().construct_mapping(node, deep=deep)

    def construct_bounded_int(self, node: ScalarNode) -> int:
        digits = sum(ch.isdigit() for ch in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise ConstructorError(None, None, f"a number of {digits} digits is too large "
                                   f"(at most {MAX_INT_DIGITS})", node.start_mark)
        value: int = self.construct_yaml_int(node)
        if abs(value).bit_length() > MAX_INT_DIGITS * 10 // 3:  # 1:0:0:... (base 60) grows
            raise ConstructorError(None, None, "this number is too large", node.start_mark)
        return value


BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_bounded_int)


def _load(loader: BoundedLoader) -> Any:
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load(text: str) -> Any:
    """The document's value, or a ``yaml.YAMLError`` (marked where it could be)."""
    if _FastLoader is None:
        return _load(BoundedLoader(text))
    try:
        return _load(_FastLoader(text))
    except (yaml.scanner.ScannerError, yaml.parser.ParserError, yaml.reader.ReaderError):
        return _load(BoundedLoader(text))  # PyYAML's message, or its acceptance


try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml
    _FastLoader: type[BoundedLoader] | None = None
else:

    class _Fast(CParser, BoundedLoader):
        """libyaml's events under the bounded composer and constructor."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self.anchors: dict[str, Node] = {}
            self._bounds()

        # the Python composer (bounded), not CParser's own
        get_single_node = yaml.composer.Composer.get_single_node
        compose_document = yaml.composer.Composer.compose_document
        compose_node = BoundedLoader.compose_node
        check_node = yaml.composer.Composer.check_node
        get_node = yaml.composer.Composer.get_node

    _FastLoader = _Fast
