"""The README, docs/*.md and BENCHMARKS.md hold together: every relative link resolves to a file of the
repository, every image exists, and every ``#anchor`` names a heading of its page by GitHub's slug rules.
The README opens with its two commands, and each of its sections carries the marker other changes place
their lines by."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
INLINE_LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
HTML_SOURCE = re.compile(r"<img\b[^>]*\bsrc=\"([^\"]+)\"", re.IGNORECASE)
HTML_ANCHOR = re.compile(r"<a\b[^>]*\b(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def doc_files(root: Path = ROOT) -> list[Path]:
    """The pages checked: the README, every page under docs/, and BENCHMARKS.md where there is one."""
    extra = [root / "BENCHMARKS.md"] if (root / "BENCHMARKS.md").is_file() else []
    return [root / "README.md", *sorted((root / "docs").glob("*.md")), *extra]


def prose(text: str) -> str:
    """The text as rendered prose: fenced code blocks and HTML comments removed, code spans reduced to text
    that cannot be a link (a link or a ``#`` line inside code is an example). Line numbers are kept."""
    lines, fence = [], ""
    for line in text.splitlines():
        opened = FENCE.match(line)
        if fence:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = ""
            lines.append("")
        elif opened:
            fence = opened.group(1)
            lines.append("")
        else:
            lines.append(line)
    joined = COMMENT.sub(_only_newlines, "\n".join(lines))
    return CODE_SPAN.sub(_code_text, joined)


def _only_newlines(match: re.Match[str]) -> str:
    return "\n" * match.group(0).count("\n")


def _code_text(match: re.Match[str]) -> str:
    """A code span's text without the characters of link syntax (a heading's slug drops them anyway);
    one that spans lines leaves only its line breaks."""
    code = match.group(2)
    return _only_newlines(match) if "\n" in code else re.sub(r"[\[\]()<>]", "", code)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: the rendered text (links become their text, code its content,
    tags dropped), lower-cased, every character but letters, digits, ``_``, ``-`` and spaces removed, and
    each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors a page offers: its headings' slugs (a repeated one gets ``-1``, ``-2``...) and explicit
    ``<a name>``/``id`` anchors."""
    text = path.read_text(encoding="utf-8")
    seen: dict[str, int] = {}
    found = set(HTML_ANCHOR.findall(text))
    for line in prose(text).splitlines():
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str, bool]]:
    """Every link target of a page with its line number and whether it is an image."""
    text = prose(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str, bool]] = []
    for pattern, image in ((INLINE_LINK, None), (REFERENCE_DEF, False), (HTML_SOURCE, True)):
        for match in pattern.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            if image is None:
                found.append((line, match.group(3), match.group(1) == "!"))
            else:
                found.append((line, match.group(1), image))
    return found


def problems(root: Path, files: list[Path]) -> list[str]:
    """One line per broken link, missing image or unknown anchor, naming the page and line."""
    root = root.resolve()
    out: list[str] = []
    cache: dict[Path, set[str]] = {}
    for page in files:
        where = page.relative_to(root)
        for line, target, image in links(page):
            at = f"{where}:{line}: {target!r}"
            if not target:
                out.append(f"{at}: empty link")
                continue
            if SCHEME.match(target):
                continue  # a web address (https:, mailto:): not this repository's to check
            path_part, _, anchor = target.partition("#")
            linked = (page.parent / unquote(path_part)).resolve() if path_part else page.resolve()
            if not linked.is_relative_to(root):
                out.append(f"{at}: points outside the repository")
                continue
            if not linked.exists():
                out.append(f"{at}: no such {'image' if image else 'file'} {linked.relative_to(root)}")
                continue
            if image and not linked.is_file():
                out.append(f"{at}: the image is not a file")
                continue
            if anchor and linked.suffix == ".md":
                if linked not in cache:
                    cache[linked] = anchors(linked)
                if unquote(anchor) not in cache[linked]:
                    out.append(f"{at}: no heading with the anchor #{anchor} in {linked.relative_to(root)}")
    return out


def test_slugs_follow_githubs_rules() -> None:
    """Anchors as GitHub makes them (checked against the anchors GitHub gave this README's headings)."""
    assert slug("Does it save work? `histoloop simulate`") == "does-it-save-work-histoloop-simulate"
    assert slug("Concept → home") == "concept--home"
    assert slug("Databases: SQLite on one machine, PostgreSQL beyond it") == (
        "databases-sqlite-on-one-machine-postgresql-beyond-it"
    )
    assert slug("The [demo](x.md) `make_demo`") == "the-demo-make_demo"


def test_every_link_image_and_anchor_of_the_readme_and_docs_resolves() -> None:
    files = doc_files()
    assert len(files) >= 10, files
    assert problems(ROOT, files) == []


def test_the_checker_reports_broken_links_missing_images_and_unknown_anchors(tmp_path: Path) -> None:
    """The checker is not vacuous: on a small tree it reports each kind of breakage by page and line, and
    nothing that only looks like a link (inside code) or that resolves."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.png").write_bytes(b"\x89PNG")
    (tmp_path / "docs" / "guide.md").write_text(
        "# Guide\n\n## Setting up (`make demo`)\n\n## Setting up (`make demo`)\n\n"
        "[back](../README.md#the-top) [ok](../README.md#start-here)\n",
        encoding="utf-8",
    )
    (tmp_path / "README.md").write_text(
        "# The top\n\n## Start here\n\n"
        "[guide](docs/guide.md#setting-up-make-demo-1) ![pic](docs/a.png) [self](#start-here)\n"
        "[gone](docs/missing.md) ![no pic](docs/b.png) [bad](docs/guide.md#nowhere) [web](https://x.org/y)\n"
        "`[in code](docs/nothing.md)`\n\n```\n[in a block](docs/nothing.md)\n# not a heading\n```\n"
        "[up](../outside.md) [wrong self](#not-a-heading)\n\n[ref]: docs/also-missing.md\n",
        encoding="utf-8",
    )
    found = problems(tmp_path, doc_files(tmp_path))
    assert found == [
        "README.md:6: 'docs/missing.md': no such file docs/missing.md",
        "README.md:6: 'docs/b.png': no such image docs/b.png",
        "README.md:6: 'docs/guide.md#nowhere': no heading with the anchor #nowhere in docs/guide.md",
        "README.md:13: '../outside.md': points outside the repository",
        "README.md:13: '#not-a-heading': no heading with the anchor #not-a-heading in README.md",
        "README.md:15: 'docs/also-missing.md': no such file docs/also-missing.md",
    ]


def test_the_readme_opens_with_its_two_commands_and_marks_its_sections() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_screen = "\n".join(readme.splitlines()[:20])
    assert (
        "```bash\nmake demo    # set up .venv; start Redis, Label Studio, the backend and a worker with three demo"
        " projects\nmake test    # set up .venv and run the test suite (what CI runs)\n```"
    ) in first_screen
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: ", makefile, re.MULTILINE) and re.search(r"^test: ", makefile, re.MULTILINE)
    lines = readme.splitlines()
    for number, line in enumerate(lines):
        if line.startswith("## "):
            assert lines[number - 1].startswith("<!-- section:"), f"README line {number + 1}: {line}"
    assert "**Contents:**" in first_screen
