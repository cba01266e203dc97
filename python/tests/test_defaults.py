"""The library owns every default: what ``ptsel CMD --help`` shows as ``[default: ...]``, what
``ptsel.defaults()`` returns and what Python's ``None`` arguments do are the same values; and
a selection or search with defaults gives the same rows from the CLI and from Python."""

import csv
import inspect
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import ptsel



def help_defaults(cli, *command):
    """``--flag`` name (underscored) -> the text of its ``[default: ...]`` (help text may wrap
    anywhere, so each option's block is read as one line)."""
    text = subprocess.run([cli, *command, "--help"], check=True, capture_output=True,
                          text=True).stdout
    found = {}
    for block in re.split(r"\n(?=\s*(?:-\w, )?--[\w-])", text):
        m = re.match(r"\s*(?:-\w, )?--([\w-]+)", block)
        d = re.search(r"\[default: ([^\]]*)\]", " ".join(block.split()))
        if m and d:
            found[m.group(1).replace("-", "_")] = d.group(1)
    return found


def same(cli, value):
    """Whether the CLI's default text ``cli`` shows the Python default ``value``: its first
    word (the CLI may add when it applies, or another method's default after a ";")."""
    cli = cli.split(";")[0].split()[0]
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, (int, float)):
        try:
            return float(cli) == float(value)
        except ValueError:
            return False
    return cli == str(value)


@pytest.mark.parametrize("command, kind, aliases", [
    (("select",), "select", {}),
    (("search",), "search", {}),
    (("build",), "build", {"hnsw_m": "m"}),
])
def test_cli_help_shows_the_python_defaults(cli, command, kind, aliases):
    shown = help_defaults(cli, *command)
    py = ptsel.defaults(kind)
    compared = 0
    for flag, text in shown.items():
        name = aliases.get(flag, flag)
        if name not in py or py[name] is None:
            continue
        compared += 1
        assert same(text, py[name]), f"{kind} --{flag}: CLI {text!r}, Python {py[name]!r}"
    assert compared >= {"select": 10, "search": 3, "build": 6}[kind], shown


def test_uot_knn_has_its_own_defaults_in_both(cli):
    shown = help_defaults(cli, "select")
    own = ptsel.defaults("select", method="uot-knn")
    assert own["eps"] != ptsel.defaults("select")["eps"]
    assert f"{own['eps']:g} for uot-knn" in shown["eps"], shown["eps"]
    assert f"{own['per_target']} for uot-knn" in shown["per_target"], shown["per_target"]


def test_python_signatures_default_to_none():
    """Every tunable argument of the binding is None by default (its value comes from the
    library); only switches without a library default (force, resume, means, progress) differ."""
    switches = {"means", "force", "resume", "progress"}
    for fn in (ptsel.Index.select, ptsel.Index.search, ptsel.Index.near_duplicates, ptsel.build):
        try:
            params = inspect.signature(fn).parameters.values()
        except ValueError:  # no text signature: the .pyi is checked below instead
            continue
        for p in params:
            if p.default is not inspect.Parameter.empty and p.name not in switches:
                assert p.default is None, f"{fn.__qualname__}({p.name}={p.default!r})"


def test_the_stubs_default_to_none():
    text = Path(ptsel.__file__).with_name("_ptsel.pyi").read_text()
    literal = re.findall(r"^\s+(\w+): [^=\n]+= (-?\d[\d.e-]*|\"[a-z0-9]+\"|True)\s*,?$", text, re.M)
    assert literal == [("progress", "True")] or not literal, literal


@pytest.fixture(scope="module")
def small(tmp_path_factory, cli):
    d = tmp_path_factory.mktemp("defaults")
    rng = np.random.default_rng(5)
    c = rng.normal(size=(40, 48)).astype(np.float32)
    lab = rng.integers(0, 40, size=6000)
    x = (c[lab] + 0.7 * rng.normal(size=(6000, 48))).astype(np.float32)
    t = (c[rng.choice(40, 150)] + 0.7 * rng.normal(size=(150, 48))).astype(np.float32)
    np.save(d / "x.npy", x)
    np.save(d / "lab.npy", lab.astype(np.int64))
    np.save(d / "t.npy", t)
    subprocess.run([cli, "build", "--features", d / "x.npy", "--labels", d / "lab.npy",
                    "--out", d / "a.ptsel", "--quiet"], check=True, capture_output=True)
    return d


@pytest.mark.parametrize("method, amount", [
    ("uot", {"classes": 4}), ("knn", {"budget": 600}), ("uot-knn", {"budget": 300}),
    ("similarity", {"classes": 4}), ("random", {"budget": 300}),
])
def test_cli_and_python_select_the_same_rows_with_defaults(cli, small, method, amount):
    (name, value), = amount.items()
    out = small / f"{method}.csv"
    subprocess.run([cli, "select", "--index", small / "a.ptsel", "--target",
                    small / "t.npy", "--method", method, f"--{name}", str(value), "--out", out],
                   check=True, capture_output=True)
    cli = [int(r["row"]) for r in csv.DictReader(open(out))]
    sel = ptsel.open(small / "a.ptsel").select(np.load(small / "t.npy"), method=method, **amount)
    assert list(map(int, sel.rows)) == cli


def test_cli_and_python_search_the_same_with_defaults(cli, small):
    out = small / "nn.npy"
    subprocess.run([cli, "search", "--index", small / "a.ptsel", "--queries",
                    small / "t.npy", "--out", out], check=True, capture_output=True)
    ids, _ = ptsel.open(small / "a.ptsel").search(np.load(small / "t.npy"))
    assert np.array_equal(ids, np.load(out))


def test_knn_search_is_what_the_library_resolves(small):
    index = ptsel.open(small / "a.ptsel")
    s = index.knn_search(method="knn")
    assert s["k"] == ptsel.defaults("select")["per_target"]
    assert s["ef"] == max(5 * s["k"], 64) and s["exact"] is False and s["probes"] is None
    assert index.knn_search(method="uot-knn", per_target=7, exact=True)["exact"] is True
    with pytest.raises(ValueError, match="not both"):
        index.knn_search(method="knn", exact=True, probes=2)
    # A method that searches nothing, the default one included.
    assert index.knn_search() is None and index.knn_search(method="similarity") is None


def test_knn_search_takes_the_arguments_of_select_and_no_other(small):
    index = ptsel.open(small / "a.ptsel")
    keywords = [p.name for p in inspect.signature(ptsel.Index.select).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY or p.name == "labels"]
    assert len(keywords) > 20, keywords
    assert index.knn_search(**{name: None for name in keywords}) is None
    assert index.knn_search(method="knn", budget=5, exclude_threshold=0.5)["k"] == 50
    with pytest.raises(TypeError, match="per_targt"):
        index.knn_search(method="knn", per_targt=5)


REQUIRED = "<no default>"


def stub_signatures():
    """name -> the signature the stub ``_ptsel.pyi`` gives it (functions and Index methods)."""
    import ast

    tree = ast.parse(Path(ptsel.__file__).with_name("_ptsel.pyi").read_text())
    found = {}

    def read(fn, prefix):
        a = fn.args
        positional = a.posonlyargs + a.args
        defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
        params = [(p.arg, "positional", REQUIRED if d is None else ast.literal_eval(d))
                  for p, d in zip(positional, defaults) if p.arg != "self"]
        params += [(p.arg, "keyword", REQUIRED if d is None else ast.literal_eval(d))
                   for p, d in zip(a.kwonlyargs, a.kw_defaults)]
        if a.kwarg:
            params.append((a.kwarg.arg, "kwargs", REQUIRED))
        found[prefix + fn.name] = params

    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            read(node, "")
        elif isinstance(node, ast.ClassDef) and node.name == "Index":
            for fn in node.body:
                if isinstance(fn, ast.FunctionDef) and not fn.decorator_list:
                    read(fn, "Index.")
    return found


@pytest.mark.parametrize("name", ["Index.search", "Index.near_duplicates", "Index.knn_search",
                                  "Index.select", "build", "defaults"])
def test_the_stubs_are_the_runtime_signatures(name):
    kinds = {inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
             inspect.Parameter.KEYWORD_ONLY: "keyword", inspect.Parameter.VAR_KEYWORD: "kwargs"}
    fn = ptsel.Index if name.startswith("Index.") else ptsel
    fn = getattr(fn, name.split(".")[-1])
    runtime = [(p.name, kinds[p.kind],
                REQUIRED if p.default is inspect.Parameter.empty else p.default)
               for p in inspect.signature(fn).parameters.values()
               if p.name != "self" and p.kind is not inspect.Parameter.POSITIONAL_ONLY]
    assert stub_signatures()[name] == runtime


def test_partitions_zero_is_refused_by_the_library(tmp_path):
    x = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="at least 1"):
        ptsel.build(x, tmp_path / "z.ptsel", partitions=0, progress=False)
    assert not (tmp_path / "z.ptsel").exists()
    built = ptsel.build(x, tmp_path / "a.ptsel", partitions="auto", progress=False)
    assert built.has_partitions
