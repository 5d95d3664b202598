"""Every relative link of README.md and docs/*.md (and the other markdown files users open) points
at a file that exists, and a `#anchor` at a heading of that file, slugged as GitHub does."""

import glob
import os
import re

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCUMENTS = sorted(
    ["README.md", "CONTRIBUTING.md", "bench/RESULTS.md", "ascend310_infer/README.md", "hub/nasfpn.md"]
    + [os.path.relpath(p, REPO_ROOT) for p in glob.glob(os.path.join(REPO_ROOT, "docs", "*.md"))]
)
LINK = re.compile(r"(?<!!)\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")


def prose_lines(text):
    """Lines outside fenced code blocks, with inline code removed (links there are not links)."""
    inside = False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            yield INLINE_CODE.sub("", line)


def github_slug(heading):
    """GitHub's anchor of a heading: the text as rendered (inline code keeps its text, link targets
    go), lower case, punctuation other than '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors_of(path):
    """Every heading anchor of a markdown file; repeated headings get -1, -2, ... as on GitHub."""
    seen, anchors = {}, set()
    with open(path, encoding="utf-8") as f:
        for line in prose_lines(f.read()):
            match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if match:
                slug = github_slug(match.group(1))
                count = seen.get(slug, 0)
                anchors.add(slug if count == 0 else f"{slug}-{count}")
                seen[slug] = count + 1
    return anchors


def relative_links(document):
    with open(os.path.join(REPO_ROOT, document), encoding="utf-8") as f:
        for line in prose_lines(f.read()):
            for _, target in LINK.findall(line):
                if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, mailto:, ...
                    yield target


def test_slugs_follow_githubs_rule():
    assert github_slug("The checkpoint's names") == "the-checkpoints-names"
    assert (
        github_slug("postprocess.py: the .bin files of the 310 application")
        == "postprocesspy-the-bin-files-of-the-310-application"
    )
    assert github_slug("Deployment paths: mAP on the demo model") == "deployment-paths-map-on-the-demo-model"
    assert (
        github_slug("Fewer devices than the release: gradient accumulation")
        == "fewer-devices-than-the-release-gradient-accumulation"
    )
    assert github_slug("3x3 convolution") == "3x3-convolution"
    assert github_slug("The `nasfpn/` tree") == "the-nasfpn-tree"


def test_link_parser_skips_code_and_external_links(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "see [a](a.md) and [b](https://x.org/b.md) `[c](c.md)`\n```\n[d](d.md)\n```\n"
        "![img](pic.png)\n## Same\n## Same\n"
    )
    found = list(LINK.findall(" ".join(prose_lines(doc.read_text()))))
    assert [t for _, t in found] == ["a.md", "https://x.org/b.md"]
    assert anchors_of(str(doc)) == {"same", "same-1"}


def test_the_documents_exist():
    for name in (
        "README.md",
        "docs/data.md",
        "docs/training.md",
        "docs/evaluation.md",
        "docs/deployment.md",
        "docs/from_the_release.md",
        "docs/troubleshooting.md",
        "docs/architecture.md",
        "docs/conventions.md",
        "docs/mutation.md",
    ):
        assert name in DOCUMENTS, name


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_relative_link_resolves(document):
    broken = []
    for target in relative_links(document):
        file_part, _, anchor = target.partition("#")
        path = (
            os.path.normpath(os.path.join(REPO_ROOT, os.path.dirname(document), file_part))
            if file_part
            else os.path.join(REPO_ROOT, document)
        )
        if not os.path.exists(path):
            broken.append(f"{target}: no file {os.path.relpath(path, REPO_ROOT)}")
        elif anchor and path.endswith(".md") and anchor not in anchors_of(path):
            broken.append(f"{target}: no heading with anchor #{anchor} in {os.path.relpath(path, REPO_ROOT)}")
    assert not broken, f"{document}: " + "; ".join(broken)


@pytest.mark.parametrize("document", [d for d in DOCUMENTS if d.startswith("docs/") and d.endswith(".md")])
def test_each_manual_starts_with_a_paragraph_saying_what_it_covers(document):
    with open(os.path.join(REPO_ROOT, document), encoding="utf-8") as f:
        blocks = [b.strip() for b in f.read().split("\n\n") if b.strip()]
    assert blocks[0].startswith("# "), f"{document} starts with a title"
    first = blocks[1]
    assert not first.startswith(("#", "|", "```", "-", "1.")) and len(first.split()) >= 15, (
        f"{document}: the title is followed by a paragraph saying what the manual covers, got {first[:80]!r}"
    )


# Repository paths the manuals name in inline code (`nasfpn/ops/boxes.py`, `nasfpn/ops/boxes.py:Anchors`): a
# module that moves or a function that is renamed must take its documentation along.
CODE_PATH = re.compile(r"`((?:nasfpn|scripts|bench|tests|configs|ascend310_infer|hub)/[^`\s]*?)(?::(\w+))?`")
BUILD_OUTPUTS = {"ascend310_infer/out/main"}  # made by ascend310_infer/build.sh, not committed


def code_paths(document):
    with open(os.path.join(REPO_ROOT, document), encoding="utf-8") as f:
        return sorted(set(CODE_PATH.findall(f.read())))


def defines(path, name):
    with open(path, encoding="utf-8") as f:
        return re.search(rf"^\s*(?:def|class)\s+{name}\b|^{name}\s*=", f.read(), re.M) is not None


def test_code_path_parser():
    text = "`nasfpn/ops/boxes.py:Anchors` and `scripts/*.sh` and `nasfpn/a b` and `--key`"
    assert sorted(set(CODE_PATH.findall(text))) == [("nasfpn/ops/boxes.py", "Anchors"), ("scripts/*.sh", "")]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_named_file_and_function_exists(document):
    missing = []
    for path, name in code_paths(document):
        if path in BUILD_OUTPUTS:
            continue
        matches = glob.glob(os.path.join(REPO_ROOT, path))
        if not matches:
            missing.append(f"`{path}`: no such file")
        elif name and not defines(matches[0], name):
            missing.append(f"`{path}:{name}`: {path} defines no {name}")
    assert not missing, f"{document}: " + "; ".join(missing)
