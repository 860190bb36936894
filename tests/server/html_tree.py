"""Our pages as a tree of elements (the standard library's parser), for tests without a browser."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"br", "hr", "img", "input", "link", "meta", "source", "wbr"}
#: Tags whose text is not what a reader sees.
HIDDEN = {"style", "script", "title", "head"}


@dataclass(eq=False)
class Element:
    tag: str
    attrs: dict[str, str]
    parent: Element | None = None
    children: list[Element | str] = field(default_factory=list)

    def walk(self) -> Iterator[Element]:
        stack: list[Element] = [self]
        while stack:
            element = stack.pop()
            yield element
            stack.extend(c for c in reversed(element.children) if isinstance(c, Element))

    def find_all(self, tag: str, **attrs: str) -> list[Element]:
        """Elements of ``tag`` whose attributes include ``attrs`` (class_ for class: one of)."""
        wanted_class = attrs.pop("class_", None)
        return [
            e
            for e in self.walk()
            if e.tag == tag
            and all(e.attrs.get(k) == v for k, v in attrs.items())
            and (wanted_class is None or wanted_class in e.attrs.get("class", "").split())
        ]

    def find(self, tag: str, **attrs: str) -> Element:
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag}> with {attrs}"
        return found[0]

    def by_id(self, element_id: str) -> Element:
        found = [e for e in self.walk() if e.attrs.get("id") == element_id]
        assert len(found) == 1, f"{len(found)} elements with id {element_id}"
        return found[0]

    def text(self) -> str:
        """The visible text, whitespace collapsed."""
        parts: list[str] = []
        stack: list[Element | str] = [self]
        while stack:
            node = stack.pop()
            if isinstance(node, str):
                parts.append(node)
            elif node.tag not in HIDDEN:
                stack.extend(reversed(node.children))
        return " ".join("".join(parts).split())

    def is_inside(self, other: Element) -> bool:
        node = self.parent
        while node is not None:
            if node is other:
                return True
            node = node.parent
        return False


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.open = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, self.open)
        self.open.children.append(element)
        if tag not in VOID:
            self.open = element

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.open.children.append(Element(tag, {k: v or "" for k, v in attrs}, self.open))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        node: Element | None = self.open
        while node is not None and node.tag != tag:
            node = node.parent
        assert node is not None and node.parent is not None, f"stray </{tag}>"
        # Our templates close what they open: a mismatch is a template bug.
        assert node is self.open, f"</{tag}> closes <{self.open.tag}>"
        self.open = node.parent

    def handle_data(self, data: str) -> None:
        self.open.children.append(data)


def parse(page: str) -> Element:
    builder = _Builder()
    builder.feed(page)
    builder.close()
    assert builder.open is builder.root, f"<{builder.open.tag}> is never closed"
    return builder.root
