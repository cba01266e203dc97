"""Every code block of README.md and docs/*.md, run.

- A block is fenced with its language: ``sh``, ``bash`` or ``console`` (run by bash),
  ``python`` (run by exec) or ``text`` (output, tables, file trees, and commands that cannot
  run here, which the prose beside them describes). Any other fence fails, so a new block is
  either run or marked as text.
- Each document runs in its own temporary folder holding small fixture files under the names
  the documents use (``F.npy``, ``L.npy``, ``T.npy``, ``features.npy``, ...). Its blocks run in
  order, one test each, as a reader would run them: a block may use the files and (Python) names
  of the blocks before it in the same document.
- Shell blocks run under ``bash -euo pipefail`` with ``ptsel`` on PATH (the binary of the
  ``cli`` fixture: $PTSEL_BIN in CI) and ``python3`` this interpreter; ``cargo run --release --``
  becomes ``ptsel``. The few commands left to CI, and one shortened, are in ``NOT_RUN`` and
  ``SHORTER`` with the reason.
- Python blocks run with ``pretraining_dataset`` and ``target_dataset`` defined (lists of
  ``(features, label)`` pairs of the fixture corpus and target). Without torch, a stand-in for
  ``torch.utils.data`` serves the loader examples, and blocks that need real torch
  (``torch.nn``, ``torch.jit``) are skipped; Spark blocks run where PTSEL_SPARK_TESTS=1 (CI).
- ``ptsel embed`` and ``build --images`` need a binary built with the ``torch`` feature; with
  any other they must exit 4 as documented, and the block is reported as skipped
  (``tests/embed.rs`` runs them in CI with the feature).
- Relative links must name existing files and headings, and no document cites a file outside
  the repository.
"""

import importlib
import os
import re
import struct
import subprocess
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import pytest

import ptsel

from conftest import REPO, local_spark

DOCS = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
SHELL = {"sh", "bash", "console"}
KNOWN = SHELL | {"python", "text"}

# Commands the documents show that this test leaves to CI, by the start of the line.
NOT_RUN = {
    "cargo test": ".ci/run runs the test suite itself",
    "pip install ./python": ".ci/run installs the package this way before these tests",
}
# Commands run at a smaller size: (as written, as run, why).
SHORTER = [
    ("cargo run --release -- demo", "ptsel demo --rows 2000 --dim 16",
     "the default 20,000 x 128 demo takes ~45 s with a debug binary; this runs the same steps"),
]


def blocks(path):
    """``(line, language, code)`` of every fenced block of ``path``."""
    found, lines = [], path.read_text().splitlines(keepends=True)
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, lang, body = i + 1, m.group(1), []
        i += 1
        while i < len(lines) and not re.match(r"^```\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"{path.name}:{start}: unclosed code block"
        found.append((start, lang, "".join(body)))
        i += 1
    return found


CASES = [(doc, line, lang, code) for doc in DOCS for line, lang, code in blocks(doc)]


def case_id(case):
    return f"{case[0].name}:{case[1]}"


# ---------------------------------------------------------------------------------------------
# Fixtures: the files the documents name, one folder per document.

def png(path, rgb, size=8):
    """A solid-colour RGB PNG (the image folder of `ptsel embed`), written without Pillow."""
    row = b"\x00" + bytes(rgb) * size
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data
                                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(row * size)) + chunk(b"IEND", b""))


class Fixtures:
    """150 classes of 8 rows in 16 dimensions, a target drawn around classes 0, 7 and 14."""

    def __init__(self, root: Path):
        rng = np.random.default_rng(5)
        centres = rng.normal(size=(150, 16))
        self.labels = np.repeat(np.arange(150), 8)
        self.features = (centres[self.labels]
                         + 0.5 * rng.normal(size=(1200, 16))).astype(np.float32)
        self.target_labels = rng.integers(0, 3, size=60)
        self.target = (centres[self.target_labels * 7]
                       + 0.5 * rng.normal(size=(60, 16))).astype(np.float32)
        test = self.features[:20] + 0.01 * rng.normal(size=(20, 16)).astype(np.float32)
        queries = (centres[rng.integers(0, 150, size=50)]
                   + 0.5 * rng.normal(size=(50, 16))).astype(np.float32)
        for names, array in [(["F", "features"], self.features), (["L", "labels"], self.labels),
                             (["T", "target"], self.target),
                             (["TL", "target_labels"], self.target_labels),
                             (["TEST"], test), (["Q"], queries)]:
            for name in names:
                np.save(root / f"{name}.npy", array)
        (root / "IDS.txt").write_text("".join(f"{i:032x}\n" for i in range(1, 1201)))
        (root / "NAMES.txt").write_text("".join(f"class-{c}\n" for c in range(150)))
        (root / "index-data").mkdir()
        for folder in ["benches", "scripts"]:  # commands run "from the repository root"
            (root / folder).symlink_to(REPO / folder)
        for c, colour in enumerate([(200, 30, 30), (30, 200, 30)]):
            (root / "images" / f"class{c}").mkdir(parents=True)
            for i in range(3):
                png(root / "images" / f"class{c}" / f"{i}.png", [v + 10 * i for v in colour])
        self.pretraining_dataset = [(self.features[i], self.labels[i]) for i in range(1200)]
        self.target_dataset = [(self.target[i], self.target_labels[i]) for i in range(60)]

    def clip_retrieval(self, root: Path):
        """Embedding shards as clip-retrieval writes them, and a target of 300 rows (for the Spark
    recipe)."""
        pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
        rng = np.random.default_rng(9)
        (root / "embeddings" / "img_emb").mkdir(parents=True, exist_ok=True)
        (root / "embeddings" / "metadata").mkdir(exist_ok=True)
        for k in range(3):
            np.save(root / "embeddings" / "img_emb" / f"img_emb_{k}.npy",
                    rng.normal(size=(8000, 16)).astype(np.float32))
            uids = [f"{u:032x}" for u in rng.integers(0, 2**62, size=8000)]
            pq.write_table(pa.table({"uid": uids}),
                           root / "embeddings" / "metadata" / f"metadata_{k}.parquet")
        np.save(root / "target.npy", rng.normal(size=(300, 16)).astype(np.float32))


class Document:
    """The folder, fixtures and Python names shared by the blocks of one document."""

    def __init__(self, root: Path):
        self.root = root
        self.data = Fixtures(root)
        self.names = {"__name__": "__docs__",
                      "pretraining_dataset": self.data.pretraining_dataset,
                      "target_dataset": self.data.target_dataset}


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    made = {}

    def get(doc):
        if doc not in made:
            made[doc] = Document(tmp_path_factory.mktemp(doc.stem))
        return made[doc]

    return get


@pytest.fixture(scope="module")
def bin_dir(cli, tmp_path_factory):
    """PATH for the shell blocks: `ptsel` (the binary under test), then the folder of this
    interpreter (its `python3`, e.g. a virtual environment's), then the rest."""
    d = tmp_path_factory.mktemp("bin")
    (d / "ptsel").symlink_to(Path(cli).resolve())
    return os.pathsep.join([str(d), os.path.dirname(sys.executable), os.environ["PATH"]])


@pytest.fixture(scope="module")
def spark_session():
    """One local Spark session for the Spark blocks (their getOrCreate() returns it)."""
    sessions = []

    def get():
        if not sessions:
            session = local_spark("ptsel-docs", "local[2]")
            sessions.append(session)
        return sessions[0]

    yield get
    for s in sessions:
        s.stop()


# ---------------------------------------------------------------------------------------------
# torch: the real one, or a stand-in for torch.utils.data.

def fake_torch():
    """torch.utils.data's DataLoader, Dataset, Sampler and Subset, reduced to what the documents
    use: batches of the sampler's indices, collated by transposing tuples."""
    data = types.ModuleType("torch.utils.data")

    class Dataset:
        pass

    class Sampler:
        pass

    class Subset(Dataset):
        def __init__(self, dataset, indices):
            self.dataset, self.indices = dataset, indices

        def __getitem__(self, i):
            return self.dataset[self.indices[i]]

        def __len__(self):
            return len(self.indices)

    def collate(items):
        if isinstance(items[0], tuple):
            return tuple(collate(list(field)) for field in zip(*items))
        return np.asarray(items)

    class DataLoader:
        def __init__(self, dataset, batch_size, sampler):
            self.dataset, self.batch_size, self.sampler = dataset, batch_size, sampler

        def __iter__(self):
            order = list(self.sampler)
            for b in range(0, len(order), self.batch_size):
                yield collate([self.dataset[i] for i in order[b:b + self.batch_size]])

    data.Dataset, data.Sampler, data.Subset, data.DataLoader = Dataset, Sampler, Subset, DataLoader
    torch = types.ModuleType("torch")
    torch.utils = types.ModuleType("torch.utils")
    torch.utils.data = data
    return torch


def real_torch():
    try:
        importlib.import_module("torch")
    except ImportError:
        return False
    return True


REAL_TORCH = real_torch()  # before any stand-in is installed


@pytest.fixture
def torch_stand_in(monkeypatch):
    """A function that installs the stand-in as torch (for the rest of the test); ptsel.torch,
    if imported over it, is forgotten afterwards."""
    installed = []

    def install():
        torch = fake_torch()
        monkeypatch.setitem(sys.modules, "torch", torch)
        monkeypatch.setitem(sys.modules, "torch.utils", torch.utils)
        monkeypatch.setitem(sys.modules, "torch.utils.data", torch.utils.data)
        installed.append(torch)

    yield install
    if installed:
        sys.modules.pop("ptsel.torch", None)
        if hasattr(ptsel, "torch"):
            del ptsel.torch


# ---------------------------------------------------------------------------------------------
# What some blocks must have produced, beyond running without an error.

def check_readme_recipe(doc):
    sel, loader = doc.names["sel"], doc.names["loader"]
    assert len(sel.classes) == 100 and (doc.root / "sel.csv").exists()
    assert {0, 7, 14} <= set(sel.classes[:10])
    batches = list(loader)
    assert sum(len(domain) for _, domain in batches) == 120
    assert sum(int(np.sum(np.asarray(domain))) for _, domain in batches) == 60


def check_spark_recipe(doc):
    corpus = ptsel.open(doc.root / "spark-corpus")
    assert (len(corpus), corpus.shards) == (24_000, 3)
    uids = np.load(doc.root / "selection.npy")
    assert uids.dtype == np.dtype("u8,u8") and 5000 < len(uids) <= 10_000
    assert (np.sort(uids) == uids).all()


CHECKS = {
    ("README.md", "from ptsel.torch import mixed"): check_readme_recipe,
    ("SCALE.md", "ptsel.spark.build"): check_spark_recipe,
}


# ---------------------------------------------------------------------------------------------
# The tests.

def shell_script(code):
    """The block as a bash script: continuation lines joined, commands left to CI commented out,
    `cargo run --release --` replaced by `ptsel`, console prompts stripped."""
    out = ["set -euo pipefail"]
    for line in code.replace("\\\n", " ").splitlines():
        if line.startswith("$ "):
            line = line[2:]
        for written, run, _why in SHORTER:
            line = line.replace(written, run)
        line = line.replace("cargo run --release --", "ptsel")
        if any(line.strip().startswith(cmd) for cmd in NOT_RUN):
            line = "# not run here: " + line
        out.append(line)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_block(case, documents, bin_dir, spark_session, monkeypatch, torch_stand_in):
    path, line, lang, code = case
    assert lang in KNOWN, (f"{path.name}:{line}: a block fenced as {lang or 'nothing'}; use sh or "
                           f"python for code this test runs, text for anything else")
    if lang == "text":
        return
    doc = documents(path)
    monkeypatch.chdir(doc.root)
    if lang in SHELL:
        env = dict(os.environ, PATH=bin_dir)
        res = subprocess.run(["bash", "-c", shell_script(code)], cwd=doc.root, env=env,
                             capture_output=True, text=True, timeout=300)
        if res.returncode == 4 and "built without the torch feature" in res.stderr:
            pytest.skip("the ptsel binary has no torch feature: exit 4 as documented")
        assert res.returncode == 0, (f"{path.name}:{line}: exit {res.returncode}\n"
                                     f"{res.stdout}\n{res.stderr}")
    else:
        if "torch" in code and not REAL_TORCH:
            if "torch.nn" in code or "torch.jit" in code:
                pytest.skip("needs torch")
            torch_stand_in()
        if "pyspark" in code:
            if os.environ.get("PTSEL_SPARK_TESTS") != "1":
                pytest.skip("Spark blocks run where PTSEL_SPARK_TESTS=1")
            doc.data.clip_retrieval(doc.root)
            spark_session()
        exec(compile(code, f"{path.name}:{line}", "exec"), doc.names)
    for (name, marker), check in CHECKS.items():
        if path.name == name and marker in code:
            check(doc)


def slug(heading):
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path):
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.*)$", path.read_text(), re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_links_and_citations(doc):
    text = doc.read_text()
    assert "DESIGN.md" not in text, f"{doc.name} cites DESIGN.md, which is not in the repository"
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        assert dest.exists(), f"{doc.name}: link to {target}: no such file"
        if anchor:
            assert anchor in anchors(dest), f"{doc.name}: link to {target}: no such heading"
    for cited in re.findall(r"`((?:src|tests|benches|scripts|examples|python|kernels|data|fuzz)"
                            r"/[\w./-]*\w)`", text):
        if "<" not in cited and "*" not in cited:
            assert (REPO / cited).exists(), f"{doc.name} cites {cited}, which does not exist"


def test_not_run_lists_only_what_the_documents_hold():
    code = "".join(c for _, _, lang, c in CASES if lang in SHELL)
    for cmd in list(NOT_RUN) + [written for written, _, _ in SHORTER]:
        assert cmd in code, f"{cmd!r} is listed but no block holds it"
