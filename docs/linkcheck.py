#!/usr/bin/env python3
"""Check the links of the built book and of the README; fail on any broken one.

Usage: python3 docs/linkcheck.py [REPO_ROOT]

- Every link in the built HTML (docs/book/) resolves: a page or file of the
  book, or a file or directory of the repository (links to `policies/`,
  `proto/`, `examples/` are relative to docs/src and so resolve from
  docs/book too), and every `#anchor` names an id of its page.
- Every page under docs/src is named in docs/src/SUMMARY.md.
- Every relative link of README.md names a file or directory of the
  repository; links into docs/src/*.md#anchor are checked against the built
  page's ids.
- External http(s) links are listed, not fetched.

Python 3 standard library only.
"""

import os
import re
import sys
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

class Page(HTMLParser):
    """The ids and the links of one HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids = set()
        self.links = []  # (line, url)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if tag != "meta" and attrs.get(key):
                self.ids.add(attrs[key])
        for key in ("href", "src"):
            value = attrs.get(key)
            if value is not None and tag in ("a", "link", "script", "img", "iframe", "source"):
                self.links.append((self.getpos()[0], value))


def parse(path, cache={}):
    if path not in cache:
        page = Page()
        with open(path, encoding="utf-8") as f:
            page.feed(f.read())
        cache[path] = page
    return cache[path]


def github_slugs(lines):
    """The anchors GitHub gives the Markdown headings of `lines`."""
    slugs, seen, fence = set(), {}, False
    for line in lines:
        if line.lstrip().startswith("```"):
            fence = not fence
        match = None if fence else re.match(r"^#{1,6} (.*)$", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            slugs.add(slug if n == 0 else f"{slug}-{n}")
    return slugs


def inside(path, root):
    return os.path.commonpath([path, root]) == root


class Checker:
    def __init__(self, repo):
        self.repo = os.path.realpath(repo)
        self.book = os.path.join(self.repo, "docs", "book")
        self.src = os.path.join(self.repo, "docs", "src")
        self.errors = []
        self.external = {}
        self.placeholders = []

    def error(self, where, message):
        self.errors.append(f"{where}: {message}")

    def check_target(self, where, base_dir, url):
        """Check one link found in a file of `base_dir`."""
        parts = urlsplit(url)
        if parts.scheme in ("http", "https"):
            self.external.setdefault(url, where)
            return
        if parts.scheme or url.startswith("//"):
            if parts.scheme not in ("mailto", "javascript", "data"):
                self.error(where, f"link `{url}` has an unexpected scheme")
            return
        if parts.path.startswith("/"):
            self.error(where, f"link `{url}` is absolute: it breaks wherever the book is served")
            return
        path = unquote(parts.path)
        target = os.path.normpath(os.path.join(base_dir, path)) if path else None
        if target is not None and not inside(target, self.repo):
            self.error(where, f"link `{url}` leads out of the repository")
            return
        if target is not None and not os.path.exists(target):
            self.error(where, f"link `{url}`: `{os.path.relpath(target, self.repo)}` does not exist")
            return
        if not parts.fragment:
            return
        page = target
        if page is not None and os.path.isdir(page):
            page = os.path.join(page, "index.html")
        if page is not None and not page.endswith(".html"):
            self.error(where, f"link `{url}`: an anchor into a file that is not a page cannot be checked")
            return
        if page is not None and not inside(page, self.book):
            self.error(where, f"link `{url}`: an anchor into a page outside the book cannot be checked")
            return
        if page is None:
            self.error(where, f"link `{url}` is checked against its page by the caller")
            return
        if not os.path.exists(page):
            self.error(where, f"link `{url}`: `{os.path.relpath(page, self.repo)}` does not exist")
            return
        if unquote(parts.fragment) not in parse(page).ids:
            self.error(where, f"link `{url}`: `{os.path.relpath(page, self.repo)}` has no anchor `#{parts.fragment}`")

    def check_book(self):
        if not os.path.isdir(self.book):
            self.error("docs/book", "the book is not built (run `mdbook build docs`)")
            return 0
        pages = 0
        for dirpath, _, files in os.walk(self.book):
            for name in sorted(files):
                if not name.endswith(".html"):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, self.repo)
                page = parse(path)
                pages += 1
                for line, url in page.links:
                    where = f"{rel}:{line}"
                    if url.startswith("#"):
                        if unquote(url[1:]) not in page.ids and url != "#":
                            self.error(where, f"link `{url}`: no such anchor on this page")
                        continue
                    self.check_target(where, dirpath, url)
        return pages

    def check_summary(self):
        summary = os.path.join(self.src, "SUMMARY.md")
        with open(summary, encoding="utf-8") as f:
            text = f.read()
        listed = set()
        for url in re.findall(r"\]\(([^)\s]+)\)", text):
            listed.add(os.path.normpath(unquote(urlsplit(url).path)))
        found = 0
        for dirpath, _, files in os.walk(self.src):
            for name in files:
                if not name.endswith(".md"):
                    continue
                rel = os.path.normpath(os.path.relpath(os.path.join(dirpath, name), self.src))
                if rel == "SUMMARY.md":
                    continue
                found += 1
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    if f.readline().startswith("<!-- PLACEHOLDER"):
                        self.placeholders.append(f"docs/src/{rel}")
                if rel not in listed:
                    self.error(f"docs/src/{rel}", "the page is not in docs/src/SUMMARY.md")
        for rel in sorted(listed):
            if not os.path.exists(os.path.join(self.src, rel)):
                self.error("docs/src/SUMMARY.md", f"`{rel}` does not exist")
        return found

    def check_readme(self):
        readme = os.path.join(self.repo, "README.md")
        with open(readme, encoding="utf-8") as f:
            lines = f.read().split("\n")
        slugs = github_slugs(lines)
        fence = False
        count = 0
        for number, line in enumerate(lines, 1):
            if line.lstrip().startswith("```"):
                fence = not fence
            if fence:
                continue
            for url in re.findall(r"\]\(([^)\s]+)\)", line):
                where = f"README.md:{number}"
                parts = urlsplit(url)
                if parts.scheme in ("http", "https"):
                    self.external.setdefault(url, where)
                    continue
                count += 1
                path = unquote(parts.path)
                if not path:
                    if parts.fragment not in slugs:
                        self.error(where, f"link `{url}`: the README has no heading `#{parts.fragment}`")
                    continue
                target = os.path.normpath(os.path.join(self.repo, path))
                if not inside(target, self.repo) or not os.path.exists(target):
                    self.error(where, f"link `{url}`: `{path}` does not exist")
                    continue
                if parts.fragment:
                    if target.endswith(".md") and not inside(target, self.src):
                        with open(target, encoding="utf-8") as f:
                            if parts.fragment not in github_slugs(f.read().split("\n")):
                                self.error(where, f"link `{url}`: `{path}` has no heading `#{parts.fragment}`")
                        continue
                    if not (inside(target, self.src) and target.endswith(".md")):
                        self.error(where, f"link `{url}`: an anchor into a file that is not Markdown cannot be checked")
                        continue
                    page = os.path.join(self.book, os.path.relpath(target, self.src))[: -len(".md")] + ".html"
                    built = os.path.relpath(page, self.repo)
                    if not os.path.exists(page):
                        self.error(where, f"link `{url}`: `{built}` was not built")
                    elif unquote(parts.fragment) not in parse(page).ids:
                        self.error(where, f"link `{url}`: `{built}` has no anchor `#{parts.fragment}`")
        return count


def main():
    repo = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    checker = Checker(repo)
    pages = checker.check_book()
    sources = checker.check_summary()
    readme = checker.check_readme()
    if checker.external:
        print(f"external links (listed, not fetched): {len(checker.external)}")
        for url, where in sorted(checker.external.items()):
            print(f"  {url}  (first in {where})")
    for page in sorted(checker.placeholders):
        checker.error(page, "still a placeholder: the page it stands for is missing")
    if checker.errors:
        for line in checker.errors:
            print(f"error: {line}", file=sys.stderr)
        print(f"linkcheck: {len(checker.errors)} broken links, missing or placeholder pages", file=sys.stderr)
        return 1
    print(f"linkcheck: {pages} pages, {sources} sources in SUMMARY.md, {readme} README links: all resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
