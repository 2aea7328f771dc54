"""Pascal VOC: one XML file per image, as labelImg and CVAT write it.

The XML is read with expat directly so every element keeps its line number
(a message can say "line 19"), and with entity declarations refused, so a
hostile file cannot expand itself (the "billion laughs") or reach for other
files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.parsers import expat

from edgepipe.core.errors import UserError

from .boxes import ImageRecord, RawBox

CORNERS = ("xmin", "ymin", "xmax", "ymax")


@dataclass
class Element:
    tag: str
    line: int
    text: str = ""
    children: list["Element"] = field(default_factory=list)

    def child(self, tag: str) -> "Element | None":
        return next((c for c in self.children if c.tag == tag), None)


class _EntityRefused(Exception):
    pass


def _refuse(*_: object) -> None:
    raise _EntityRefused


def read_xml(data: bytes, source: str) -> Element:
    """The element tree of `data`; a UserError naming `source` and the line when it is not well-formed XML."""
    if not data.strip():
        raise UserError(f"{source} is empty; label the image again or delete the file")
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[Element] = []
    roots: list[Element] = []

    def start(tag: str, _attributes: dict[str, str]) -> None:
        element = Element(tag, parser.CurrentLineNumber)
        (stack[-1].children if stack else roots).append(element)
        stack.append(element)

    def text(chunk: str) -> None:
        if stack:
            stack[-1].text += chunk

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda _tag: stack.pop()
    parser.CharacterDataHandler = text
    parser.EntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise UserError(f"{source} line {exc.lineno}: not valid XML ({expat.ErrorString(exc.code)}); "
                        "fix or delete the file") from None
    except _EntityRefused:
        raise UserError(f"{source} line {parser.CurrentLineNumber}: declares XML entities, which annotation "
                        "files never need; refusing to read it") from None
    return roots[0]


def _number(element: Element | None, parent: Element, name: str, source: str) -> float:
    if element is None:
        raise UserError(f"{source} line {parent.line}: <{parent.tag}> has no <{name}>; fix the file")
    try:
        return float(element.text.strip())
    except ValueError:
        raise UserError(f"{source} line {element.line}: <{name}> is {element.text.strip()[:40]!r}, "
                        "not a number; fix the file") from None


def _size(root: Element, source: str) -> tuple[int, int] | None:
    """The declared (width, height); None when absent or 0 (labelImg writes 0 for some images)."""
    size = root.child("size")
    if size is None:
        return None
    width, height = (_number(size.child(k), size, k, source) for k in ("width", "height"))
    if width == 0 or height == 0:
        return None
    if not (width > 0 and height > 0 and width.is_integer() and height.is_integer()):
        raise UserError(f"{source} line {size.line}: image size {width:g}x{height:g} is not a whole number "
                        "of pixels; fix <size>")
    return int(width), int(height)


def _box(obj: Element, source: str) -> RawBox:
    name = obj.child("name")
    label = name.text.strip() if name is not None else ""
    if not label:
        raise UserError(f"{source} line {obj.line}: <object> has no <name>; give the box a class name")
    bndbox = obj.child("bndbox")
    if bndbox is None:
        raise UserError(f"{source} line {obj.line}: object {label!r} has no <bndbox>; "
                        "only boxes are supported (not polygons or masks)")
    x0, y0, x1, y1 = (_number(bndbox.child(k), bndbox, k, source) for k in CORNERS)
    return RawBox(label, x0, y0, x1, y1, f"{source} line {bndbox.line}")


def parse_voc(data: bytes, source: str) -> ImageRecord:
    """One VOC file: the image it names (<filename>, else the XML's own name is used by the caller), its boxes."""
    root = read_xml(data, source)
    if root.tag != "annotation":
        raise UserError(f"{source} line {root.line}: root element is <{root.tag}>, not a Pascal VOC "
                        "<annotation>; move the file out of the data folder")
    filename = root.child("filename")
    boxes = tuple(_box(obj, source) for obj in root.children if obj.tag == "object")
    return ImageRecord(filename.text.strip() if filename is not None else "", source, boxes, _size(root, source))
