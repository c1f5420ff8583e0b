"""The documentation: the site builds (strict: no broken link, no docstring the API reference
cannot render), the tutorials' code runs and shows what it claims, and the README's links work.

The site build runs every tutorial's code (markdown-exec), so it needs the [docs], [train] and
[data] extras; it takes about 20 s on 2 CPU cores.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def page_text(path: Path) -> str:
    """A built page's text, without its tags (code blocks are highlighted span by span)."""
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


def test_the_site_builds_and_runs_its_tutorials(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    pytest.importorskip("markdown_exec")
    site = tmp_path / "site"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(site)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-20000:]}"

    # the own-model tutorial ran: trained, then the chip reproduced the PyTorch output counts
    own = page_text(site / "own-model" / "index.html")
    assert "same output counts as the chip: True" in own
    assert "in two pieces = whole: True" in own
    assert re.search(r"epoch 6: loss [0-9.]+, test accuracy [0-9.]+", own)
    # the other tutorials ran
    train = page_text(site / "train-for-async" / "index.html")
    assert "$ asyncsnn train --config tiny.toml" in train and "wrote edge.npz" in train
    assert "same output counts: True" in page_text(site / "emulate-a-chip" / "index.html")
    props = page_text(site / "property-test-a-scheduler" / "index.html")
    assert "passed on 200 random queues" in props and "n=2" in props
    assert "usage: asyncsnn train" in page_text(site / "cli" / "index.html")
    # the API reference rendered the layer modules from their docstrings
    api = (site / "api" / "layers" / "index.html").read_text()
    assert 'id="asyncsnn.layers.AsyncLIF"' in api
    assert "A population of LIF neurons as the asynchronous chip runs them" in api
    assert 'id="asyncsnn.layers.run.run"' in api
    # every page in the navigation was built
    for page in ("index.html", "install/index.html", "study/index.html", "training/index.html",
                 "emulator/index.html", "chips/index.html", "datasets/index.html", "benchmarks/index.html",
                 "execution-model/index.html", "experiment-results/index.html", "api/chip/index.html",
                 "api/sim/index.html", "api/errors/index.html"):
        assert (site / page).is_file(), page


def test_the_readme_starts_with_the_commands_and_its_links_resolve():
    text = README.read_text()
    head = text.splitlines()[:40]
    for marker in ("<!-- main-command -->", "<!-- test-command -->"):
        assert marker in head, f"{marker} is not in the README's first 40 lines"
        i = head.index(marker)
        assert head[i + 1] == "```bash" and head[i + 2].startswith("python3 -m venv .venv"), marker
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    missing = []
    for link in links:
        if re.match(r"[a-z]+://|mailto:|#", link):
            continue
        path = (ROOT / link.split("#")[0]).resolve()
        if not path.exists():
            missing.append(link)
    assert not missing, f"README links to files that do not exist: {missing}"


def test_the_docs_link_outside_docs_by_url():
    """mkdocs resolves only links inside docs/; anything else must be an absolute URL."""
    bad = []
    for page in (ROOT / "docs").rglob("*.md"):
        for link in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+://|mailto:|#", link):
                continue
            target = (page.parent / link.split("#")[0]).resolve()
            if ROOT / "docs" not in target.parents or not target.exists():
                bad.append(f"{page.relative_to(ROOT)}: {link}")
    assert not bad, bad
