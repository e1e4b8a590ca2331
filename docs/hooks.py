"""MkDocs hooks: the site's home page is the README itself, its links made relative to docs/.

The README links to ``docs/<page>.md`` (right on GitHub); on the site those pages sit beside
the home page. One source, so the first screen cannot drift between the two.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"
DOCS_LINK = re.compile(r"\]\(docs/")


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if page.file.src_uri != "index.md":
        return markdown
    return DOCS_LINK.sub("](", README.read_text(encoding="utf-8"))
