"""Fields picked by the text of their label (`[fields.X] label = "挂牌时间"`), as portals lay out details:

    <li><span>挂牌时间</span>2024-01-02</li>      <dt>挂牌时间</dt><dd>2024-01-02</dd>
    <tr><th>挂牌时间：</th><td>2024-01-02</td></tr>   <li>挂牌时间：2024-01-02</li>

Class names on such pages are shared by every row (or obfuscated), so the label is the only handle. The
value is the text right after the label: the next non-blank sibling of the element that holds just the
label (climbing out of wrappers such as `<th><b>挂牌时间</b></th>`, never out of the scope searched), or
the rest of the same text after a colon. Written against the Node interface only, so both engines agree.
"""

from __future__ import annotations

from etl.parse.engines import Node

_COLONS = " :：\u00a0"


def _is_label(text: str, label: str) -> bool:
    return text.rstrip(_COLONS) == label


def _after(scope: Node, anchor: Node, label: str) -> str | None:
    """The text after the label held by `anchor` (a text node), or None."""
    stop, node = scope.key(), anchor
    while True:
        for sibling in node.following():
            text = sibling.text()
            if text:
                return text.lstrip(_COLONS) or None
        up = node.parent()
        if up is None or up.key() == stop or not _is_label(up.text(), label):
            return None  # the label is the last thing in its element: nothing follows it
        node = up


def labelled(scope: Node, label: str, every: bool = False, texts: list[Node] | None = None) -> list[str]:
    """The values next to `label` inside `scope`: the first, or with `every` all of them. `texts` are the
    scope's text nodes if the caller already has them (several label fields read one detail page)."""
    out: list[str] = []
    for node in scope.text_nodes() if texts is None else texts:
        text = node.text()
        if label not in text:
            continue
        if _is_label(text, label):
            value = _after(scope, node, label)
        else:
            rest = text[len(label):].lstrip(" \u00a0") if text.startswith(label) else ""
            value = rest.lstrip(_COLONS) if rest[:1] in (":", "：") else None  # "挂牌时间：2024-01-02"
        if value:
            out.append(value)
            if not every:
                break
    return out
