"""A small real text-classification dataset built from the Python standard library.

Each example is a docstring of a public stdlib module, class, function or method,
labelled by the *family* of modules it comes from (text, files, network, ...). Two more
targets describe the documented object itself, read by ``inspect`` and never from the
docstring, so a model has to understand the text to predict them: ``traits`` (a list of
TRAITS, for multi-label) and ``n_params`` (how many parameters it takes, for regression).
It needs no download: every Python install has the sources, so the dataset is
built on first use and cached with ``DatasetDict.save_to_disk``.

For token classification, ``words`` is the text split on its spaces (``" ".join(words) == text``) and ``tags`` gives
each word an IOB2 tag (seqeval's conventions): ``B-CODE`` / ``I-CODE`` for a span that names Python code, ``B-NUM``
for a number literal, ``O`` otherwise (``tag_words``). Code is read from Python, never from a list of words:

- spans the author or Python's syntax marks: an inline literal in double or single backticks (or the old `x' quotes),
  whatever it holds, and a call "name(" with its arguments up to the word that closes its parenthesis, 8 words more at
  most ("os.chown(fd, uid, gid).": B I I I); "argument(s)" is English;
- a word, its edge punctuation peeled: a dunder; a dotted name whose first part is an importable stdlib module or a
  parameter of the documented callable, or that resolves attribute by attribute from the documented object's module,
  class, the object itself or ``builtins`` ("os.path.join", "Random.seed"; not "e.g": ``math.e`` has no ``g``); any
  other name that is a keyword, a builtin, a stdlib module, a parameter or an attribute of those scopes ("ValueError",
  "OrderedDict" in collections, "dir_fd", "None").
- except what English reads as English: a lowercase word ("is", "for", "list", "random": keywords, builtins or module
  attributes all, they made 26% of the words CODE and 96% of the rows hold one, a tag that says "common word"), an
  acronym (xml.etree defines ``XML``), a single letter (``re.A``), and a capitalised word opening a sentence
  ("Random number generator", "Thread objects"), keywords (None, True, False) aside. Acronyms and sentence openers
  each move 0.1% of the words. Bare "str", "bytes" or "json" are thus O: recall given up so that the tag means code, not a common word.

A number is a word that, its edges peeled and a sign aside, is one Python NUMBER token (``tokenize``): 0, -1, 0x20,
2.5e-3, 3.11; not 2**32, "0,1", NaN. Inside a code span a number is CODE.

Measured on CPython 3.11 over all 1,572 rows (40,326 words): O 93.6%, B-CODE 4.7%, I-CODE 1.0%, B-NUM 0.64% of the
words; 1,896 CODE and 257 NUM entities; 58% of the rows hold a CODE entity, 9% a NUM one, 62% either; each split within
three points of that (train: 57% and 10% of its rows).

Only the standard library is imported at module level, so the collector can run in a
fresh interpreter (see ``collect_docstrings``); ``datasets`` is imported where used.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import importlib
import importlib.util
import inspect
import io
import json
import keyword
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import tokenize
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from datasets import DatasetDict

# Bump whenever the builder's output changes, so stale caches are not reused.
BUILDER_VERSION = 4  # 3: the traits and n_params columns; 4: the words and tags columns

# Shorter docstrings ("Return self.") carry almost no signal; longer ones are truncated
# to keep examples sentence-encoder sized (all-MiniLM-L6-v2 truncates at 256 tokens).
MIN_CHARS = 40
MAX_CHARS = 300
# Validation is as large as train: the ladder splits it into selection and decision rows, and a decision needs a
# few hundred rows to resolve a gain of a point or two (version 1 had 0.6 / 0.2 / 0.2: about 100 decision rows).
SPLIT_FRACTIONS = {"train": 0.4, "validation": 0.4, "test": 0.2}

# Family -> stdlib modules. Families are chosen for clearly different vocabularies
# and each has a few hundred usable docstrings on CPython 3.10+. Only side-effect-free
# modules that exist on Linux (no GUI, no easter eggs); missing ones are skipped.
# fmt: off
FAMILIES: dict[str, list[str]] = {
    # Strings, parsing and markup.
    "text": [
        "string", "re", "textwrap", "difflib", "html", "html.parser", "json",
        "csv", "unicodedata", "codecs", "shlex", "pprint", "reprlib", "configparser",
        "base64", "binascii", "locale", "gettext", "tomllib", "xml.etree.ElementTree",
        "xml.dom.minidom", "xml.dom.pulldom", "xml.sax", "xml.sax.handler", "xml.sax.saxutils",
    ],
    # Filesystem, archives and file formats.
    "files": [
        "os", "os.path", "shutil", "pathlib", "glob", "fnmatch", "tempfile",
        "zipfile", "tarfile", "filecmp", "fileinput", "io", "stat", "gzip",
        "bz2", "lzma", "zlib", "shelve", "dbm",
    ],
    # Sockets, internet protocols and e-mail.
    "network": [
        "socket", "ssl", "socketserver", "http.client", "http.server",
        "http.cookies", "http.cookiejar", "urllib.request", "urllib.parse",
        "urllib.error", "urllib.robotparser", "email.message", "email.utils",
        "email.parser", "email.headerregistry", "email.policy", "smtplib",
        "ftplib", "imaplib", "poplib", "xmlrpc.client", "xmlrpc.server",
        "ipaddress", "mimetypes", "wsgiref.simple_server", "wsgiref.handlers",
    ],
    # Threads, processes, async IO and synchronisation.
    "concurrency": [
        "threading", "multiprocessing", "multiprocessing.pool",
        "multiprocessing.managers", "multiprocessing.shared_memory",
        "multiprocessing.connection", "multiprocessing.synchronize",
        "multiprocessing.queues", "asyncio", "concurrent.futures", "queue",
        "subprocess", "sched", "signal", "contextvars", "selectors",
    ],
    # Numbers and randomness.
    "math": [
        "math", "cmath", "statistics", "decimal", "fractions", "random", "numbers", "secrets",
    ],
    # Containers, typing and object plumbing.
    "data_structures": [
        "collections", "collections.abc", "heapq", "bisect", "enum",
        "dataclasses", "typing", "array", "weakref", "copy", "types",
        "functools", "itertools", "graphlib", "abc", "contextlib", "operator", "struct",
    ],
}
# fmt: on

# What `traits` may hold, in the order a row lists them. Each holds for 12-52% of a split's rows on CPython 3.11;
# *args (3%), **kwargs (3%) and keyword-only parameters (7%) were measured too and left out, too rare to learn from
# a couple of hundred training rows.
TRAITS = (
    "class",  # a class (its signature: what calling it takes)
    "function",  # a routine reached from a module: a function, or a method bound to a hidden instance (random.random)
    "method",  # a routine defined in a class body (plain, class, static or dunder)
    "no_params",  # called with no arguments (self / cls aside)
    "has_defaults",  # at least one parameter has a default
    "positional_only",  # parameters before a `/` (mostly C functions)
)


# Private/platform modules that implement a family's public API under another name.
_IMPLEMENTED_IN: dict[str, set[str]] = {
    "text": {"_elementtree"},
    "files": {"posix", "posixpath", "genericpath"},
    "concurrency": {"_thread", "_posixshmem"},
    "data_structures": {"_collections_abc", "_weakrefset"},
}


def _clean(doc: str) -> str | None:
    """Collapse whitespace and truncate at a word boundary; None if too short."""
    text = " ".join(doc.split())
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS].rsplit(" ", 1)[0]
    return text if len(text) >= MIN_CHARS else None


def _is_documented_member(obj: object) -> bool:
    # Data attributes (ints, strings, enum members...) would report their *type's*
    # docstring, so only callables, classes and descriptors are kept.
    return inspect.isclass(obj) or inspect.isroutine(obj) or inspect.isdatadescriptor(obj)


def _is_public_or_dunder(name: str) -> bool:
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


class _Seen(NamedTuple):
    """One documented object as the walk meets it."""

    text: str
    kind: str  # module, class, function, method, attribute (properties and other data descriptors)
    traits: frozenset[str]
    n_params: float | None  # None: Python cannot read the signature (see _describe)
    scopes: tuple[object, ...]  # where the names its docstring may cite live: its module, its class, itself
    params: frozenset[str]  # its parameters' names, self / cls included (its docstring cites them: "self.x")


class Documented(NamedTuple):
    """One example before its split: a cleaned docstring and what is known of what it documents.

    A NamedTuple so that it crosses the fresh interpreter's JSON as a plain list."""

    text: str
    traits: list[str]
    n_params: float
    words: list[str]
    tags: list[str]


def _signature(obj: object) -> inspect.Signature | None:
    # classmethod / staticmethod objects (met in a class's vars) are read through the function they wrap.
    target = obj.__func__ if isinstance(obj, (classmethod, staticmethod)) else obj
    try:
        return inspect.signature(target)
    except (ValueError, TypeError):  # C callables without a __text_signature__ (math.log, deque.count, int)
        return None


def _describe(obj: object, text: str, context: tuple[object, ...]) -> _Seen:
    """What ``inspect`` says of ``obj``: its kind, its traits and its parameter count.

    Modules and data descriptors are not called: no parameters. A callable whose signature Python cannot read
    (6% of the rows, C code) keeps the traits its kind gives, and its count is filled in later (``_fill_unknown``).
    ``context``: the module and classes the walk found ``obj`` in, outermost first (a routine in a class is a
    method).
    """
    scopes = (*context, obj)
    if isinstance(obj, ModuleType) or not (inspect.isclass(obj) or inspect.isroutine(obj)):
        kind = "module" if isinstance(obj, ModuleType) else "attribute"
        return _Seen(text, kind, frozenset(), 0.0, scopes, frozenset())
    kind = "class" if inspect.isclass(obj) else "method" if context and inspect.isclass(context[-1]) else "function"
    signature = _signature(obj)
    if signature is None:
        return _Seen(text, kind, frozenset({kind}), None, scopes, frozenset())
    params = list(signature.parameters.values())
    names = frozenset(p.name for p in params)
    # A method's first parameter is its instance or class, never passed by the caller. A class's signature (its
    # __init__ / __new__) and a bound method's already leave it out.
    bound_first = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if kind == "method" and not isinstance(obj, staticmethod) and params and params[0].kind in bound_first:
        params = params[1:]
    traits = {kind}
    if not params:
        traits.add("no_params")
    if any(p.default is not inspect.Parameter.empty for p in params):
        traits.add("has_defaults")
    if any(p.kind is inspect.Parameter.POSITIONAL_ONLY for p in params):
        traits.add("positional_only")
    return _Seen(text, kind, frozenset(traits), float(len(params)), scopes, names)


def _walk(
    obj: object, owners: set[str], seen: dict[int, object], out: list[_Seen], context: tuple[object, ...] = ()
) -> None:
    """Append docstrings of ``obj`` and, for modules/classes, of their own public members.

    ``context``: the module and classes ``obj`` was found in, outermost first."""
    if id(obj) in seen:
        return
    seen[id(obj)] = obj  # holding a reference keeps the id from being reused
    owner = getattr(obj, "__module__", None)
    # Skip things merely re-exported from elsewhere (datetime in email.utils, builtins...):
    # their docstrings say nothing about this family. C accelerators (_socket) count as owned.
    if isinstance(owner, str) and {owner, owner.split(".")[0].lstrip("_")}.isdisjoint(owners):
        return
    # The object's *own* docstring, not inspect.getdoc: that falls back to inherited
    # docs, e.g. labelling ZeroDivisionError's text "math" via decimal.DivisionByZero.
    doc = getattr(obj, "__doc__", None)
    if isinstance(doc, str) and (text := _clean(doc)) is not None:
        out.append(_describe(obj, text, context))

    if isinstance(obj, ModuleType):
        names = getattr(obj, "__all__", None) or [n for n in dir(obj) if not n.startswith("_")]
        members = [getattr(obj, n, None) for n in sorted(set(names))]
    elif inspect.isclass(obj):
        # Only the class's own attributes (inherited ones belong to their defining class).
        # Dunders are kept: their docs are often specific ("Divide both mu and sigma..."),
        # and the generic C slot texts shared by every family are removed as ambiguous.
        members = [v for n, v in sorted(vars(obj).items()) if _is_public_or_dunder(n)]
    else:
        return
    for member in members:
        if _is_documented_member(member) and not isinstance(member, ModuleType):
            _walk(member, owners, seen, out, (*context, obj))


def _fill_unknown(described: list[_Seen]) -> dict[str, float]:
    """kind -> the median parameter count of its callables whose signature reads (class 2, method 1, function 2 on
    CPython 3.11): the value of those whose signature does not, since a regression target is never missing."""
    counts: dict[str, list[float]] = {}
    for seen in described:
        if seen.n_params is not None:
            counts.setdefault(seen.kind, []).append(seen.n_params)
    return {kind: statistics.median_low(values) for kind, values in counts.items()}


def _merge(described: list[_Seen], fill: dict[str, float]) -> Documented:
    """One example from every object a docstring documents: each trait that holds for one of them (random.random
    is a function, Random.random a method), the first readable parameter count."""
    traits = set().union(*(seen.traits for seen in described))
    n_params = next((seen.n_params for seen in described if seen.n_params is not None), None)
    if n_params is None:
        n_params = fill[described[0].kind]
    scopes = {id(scope): scope for seen in described for scope in seen.scopes}
    params = frozenset().union(*(seen.params for seen in described))
    words, tags = tag_words(described[0].text, tuple(scopes.values()), params)
    return Documented(described[0].text, [t for t in TRAITS if t in traits], n_params, words, tags)


# ---- Token tags: which words of a docstring name Python code (CODE), which are number literals (NUM) ----

# Peeled off a word's ends before it is judged: prose punctuation, brackets, quotes, backticks, reST emphasis
# (*max_length*) and a decorator's @.
_EDGES = "()[]{}<>,.;:!?'\"`*@"
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = re.compile(rf"{_IDENT}(?:\.{_IDENT})+")
_NAME = re.compile(_IDENT)
_TITLE = re.compile(r"[A-Z][a-z]+")  # "Random", "Thread": English at a sentence's start
_DUNDER = re.compile(r"__\w+__")
_CALL = re.compile(rf"{_IDENT}\(")
_PLURAL = re.compile(r"\W*[A-Za-z]+\((?:s|es)\)\W*")  # "argument(s)": English, not a call
# Inline literals, by the author's own markup: ``x`` and `x` (reST), `x' (the old quoting some modules keep).
_LITERAL = re.compile(r"``(?!`)(.+?)``|`([^`'\s]+)'|`([^`]{1,60}?)`")
_CALL_WORDS = 8  # a call's arguments spread over at most this many more words ("os.chown(fd, uid, gid)")


def tag_words(text: str, scopes: tuple[object, ...], params: frozenset[str]) -> tuple[list[str], list[str]]:
    """Split ``text`` on its spaces and tag each word IOB2: B-/I-CODE, B-NUM or O (see the module docstring).

    Punctuation stays on its word: the words are exactly the ``text`` column's (a prediction maps back to the text by
    position), the rule peels a word's edges before it judges it, so the tags stay clean, and the tokenizer splits
    the punctuation off as sub-tokens anyway. Splitting it off here would cut "e.g.", "3.11." and "f(x)," apart.
    The cost: a tag sits on a word's first sub-token, which is punctuation on 13% of the entities (mostly a backtick,
    itself the author's mark for code).

    Args:
        text: a cleaned docstring (single spaces).
        scopes: where the names it may cite live (the documented object's module, class, the object itself).
        params: the documented callable's parameter names.

    Returns:
        The words (``" ".join(words) == text``) and one tag per word.
    """
    words = text.split(" ")
    spans = [0] * len(words)  # 0: not code; k > 0: the word is in code span k
    starts = [0]
    for word in words[:-1]:
        starts.append(starts[-1] + len(word) + 1)
    span = 0
    for m in _LITERAL.finditer(text):
        lo, hi = m.span(m.lastindex or 0)
        inside = [i for i, at in enumerate(starts) if at < hi and at + len(words[i]) > lo and not spans[i]]
        if inside:
            span += 1
            for i in inside:
                spans[i] = span
    i = 0
    while i < len(words):
        word = words[i]
        if not spans[i] and (m := _CALL.search(word)) and not _PLURAL.fullmatch(word):
            span += 1
            depth, j = 0, i
            while True:  # the call and its arguments, up to the word that closes its parenthesis
                piece = words[j][m.start() :] if j == i else words[j]
                depth += piece.count("(") - piece.count(")")
                spans[j] = span
                if depth <= 0 or j + 1 == len(words) or j - i == _CALL_WORDS or spans[j + 1]:
                    break
                j += 1
            i = j
        elif not spans[i] and _names_code(word.strip(_EDGES), scopes, params, not i or words[i - 1][-1] in ".!?:"):
            span += 1
            spans[i] = span
        i += 1
    tags = []
    for i, word in enumerate(words):
        if spans[i]:
            tags.append("I-CODE" if i and spans[i - 1] == spans[i] else "B-CODE")
        else:
            tags.append("B-NUM" if _is_number(word.strip(_EDGES)) else "O")
    return words, tags


def _names_code(core: str, scopes: tuple[object, ...], params: frozenset[str], starts_sentence: bool) -> bool:
    """Whether a word, its edges peeled, names Python code (the module docstring gives the rule)."""
    if _DUNDER.fullmatch(core):
        return True  # names Python reserves for itself
    if _DOTTED.fullmatch(core):
        first, *rest = core.split(".")
        return _is_stdlib_module(first) or first in params or _resolves([first, *rest], scopes)
    if not _NAME.fullmatch(core) or len(core) < 2 or core.isalpha() and (core.islower() or core.isupper()):
        return False  # a letter ("A"), a lowercase word ("list", "random", "for") or an acronym ("XML"): English
    if keyword.iskeyword(core):
        return True  # True, False, None (the lowercase keywords were read as English above)
    if starts_sentence and _TITLE.fullmatch(core):
        return False  # "Random number generator", "Thread objects": the capital says nothing
    return hasattr(builtins, core) or _is_stdlib_module(core) or core in params or _resolves([core], scopes)


def _resolves(path: list[str], scopes: tuple[object, ...]) -> bool:
    """Whether ``a.b.c`` is reached by attribute lookups from one of ``scopes`` or from ``builtins``."""
    for scope in (*scopes, builtins):
        target = scope
        try:
            for name in path:
                target = getattr(target, name)
        except Exception:  # AttributeError, or a descriptor that raises on a class
            continue
        return True
    return False


@functools.cache
def _is_stdlib_module(name: str) -> bool:
    """A top-level standard-library module that imports here (``sys.stdlib_module_names``: CPython 3.10+)."""
    return name in sys.stdlib_module_names and importlib.util.find_spec(name) is not None


def _is_number(core: str) -> bool:
    """Whether ``core`` is one Python number literal (``0x1F``, ``1_000``, ``2.5e-3``, ``3j``), signed or not."""
    body = core[1:] if core[:1] in "+-" else core
    if not body or not body[0].isdigit() and body[0] != ".":
        return False
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(body).readline) if t.type == tokenize.NUMBER]
    except (tokenize.TokenError, SyntaxError):
        return False
    return len(tokens) == 1 and tokens[0].string == body


def _collect_here() -> dict[str, list[Documented]]:
    """Collect in this process: family -> examples sorted by docstring, unique, ambiguous ones dropped."""
    found: dict[str, set[str]] = {}
    described: dict[str, list[_Seen]] = {}
    for family, modules in FAMILIES.items():
        owners = {m.split(".")[0] for m in modules} | _IMPLEMENTED_IN.get(family, set())
        walked: list[_Seen] = []
        seen: dict[int, object] = {}
        for name in modules:
            # Importing or touching some attributes emits DeprecationWarning: not our concern.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    module = importlib.import_module(name)
                except ImportError:  # e.g. a module absent from this build of Python
                    continue
                _walk(module, owners, seen, walked)
        for item in walked:
            found.setdefault(item.text, set()).add(family)
            described.setdefault(item.text, []).append(item)
    fill = _fill_unknown([item for items in described.values() for item in items])
    # An ambiguous text (same docstring in two families) has no correct label.
    return {
        family: sorted(_merge(described[t], fill) for t, fams in found.items() if fams == {family})
        for family in FAMILIES
    }


def collect_docstrings() -> dict[str, list[Documented]]:
    """Return family -> examples sorted by docstring; texts found in several families are dropped.

    Runs in a fresh isolated interpreter (``-I``: no user site, no cwd, no PYTHON* env):
    the host process may have patched the stdlib (pytest replaces threading.excepthook),
    which would otherwise change the dataset from one caller to the next.
    """
    code = (
        "import importlib.util, json, sys\n"
        "spec = importlib.util.spec_from_file_location('_stdlib_docstrings', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "json.dump(module._collect_here(), sys.stdout)\n"
    )
    cmd = [sys.executable, "-I", "-c", code, str(Path(__file__).resolve())]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"stdlib docstring collector failed:\n{proc.stderr}")
    return {family: [Documented(*row) for row in rows] for family, rows in json.loads(proc.stdout).items()}


def build_stdlib_docstrings(seed: int = 0, max_per_family: int = 300) -> DatasetDict:
    """Build the balanced, stratified train/validation/test DatasetDict (no caching)."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

    by_family = collect_docstrings()
    # Balance: every family gets the same number of examples, so chance is 1 / num_classes.
    per_family = min(max_per_family, *(len(t) for t in by_family.values()))
    rng = random.Random(seed)
    splits: dict[str, list[tuple[Documented, int]]] = {s: [] for s in SPLIT_FRACTIONS}
    for label, family in enumerate(FAMILIES):
        # by_family is sorted by text, so the seeded sample is the same on every run (and the same texts as
        # version 2, which sampled the bare texts).
        docs = rng.sample(by_family[family], per_family)
        n_train = round(per_family * SPLIT_FRACTIONS["train"])
        n_val = round(per_family * SPLIT_FRACTIONS["validation"])
        bounds = {
            "train": (0, n_train),
            "validation": (n_train, n_train + n_val),
            "test": (n_train + n_val, per_family),
        }
        for split, (lo, hi) in bounds.items():
            splits[split].extend((doc, label) for doc in docs[lo:hi])

    features = Features(
        {
            "text": Value("string"),
            "label": ClassLabel(names=list(FAMILIES)),
            "traits": List(Value("string")),
            "n_params": Value("float64"),
            "words": List(Value("string")),
            "tags": List(Value("string")),
        }
    )
    result = {}
    for split, rows in splits.items():
        rng.shuffle(rows)  # mix families so batches are not single-class
        result[split] = Dataset.from_dict(
            {
                "text": [doc.text for doc, _ in rows],
                "label": [y for _, y in rows],
                "traits": [doc.traits for doc, _ in rows],
                "n_params": [doc.n_params for doc, _ in rows],
                "words": [doc.words for doc, _ in rows],
                "tags": [doc.tags for doc, _ in rows],
            },
            features=features,
        )
    return DatasetDict(result)


def _fingerprint(seed: int, max_per_family: int) -> str:
    # Docstrings differ between Python versions, so the version is part of the key.
    key = f"{platform.python_implementation()}-{platform.python_version()}"
    key += f"|seed={seed}|max={max_per_family}|v={BUILDER_VERSION}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$PEFT_LADDER_CACHE`` if set, else ``~/.cache/peft_ladder``."""
    return Path(os.environ.get("PEFT_LADDER_CACHE") or Path.home() / ".cache" / "peft_ladder")


def load_stdlib_docstrings(
    cache_dir: str | Path | None = None, seed: int = 0, max_per_family: int = 300
) -> DatasetDict:
    """Load the dataset from the cache, building and saving it on first use."""
    from datasets import load_from_disk

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / "stdlib_docstrings" / _fingerprint(seed, max_per_family)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        dataset = build_stdlib_docstrings(seed=seed, max_per_family=max_per_family)
        # Save to a sibling temp dir and rename it into place: the rename is atomic,
        # so a killed build never leaves a half-written cache behind.
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            dataset.save_to_disk(str(tmp))
            os.replace(tmp, target)
        except OSError:
            # Renaming onto a non-empty dir fails: another process finished first, keep theirs.
            if not target.exists():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return load_from_disk(str(target))
