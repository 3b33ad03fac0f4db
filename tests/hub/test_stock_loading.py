"""Every folder we write, tried with the stock loader a Hugging Face user calls first, in a fresh process that
never imports peft_ladder, with the base where a download leaves it (the packaged all-MiniLM-L6-v2 and a tiny
BERT with its pooler in a Hugging Face cache under Hub ids, their configs without task labels, as on the Hub;
the image bases in local folders). No loader is patched.

Each row is (folder kind, model family): either the call gives `load_adapted`'s logits (1e-4) with the label
names, or it raises an error that names what to call instead. The rows' outcomes are written here by hand, and
`peft_ladder.hub.stock.stock_loading` (what cards and `peft_ladder.json` tell users) must say the same; the
README's sharing table is written from them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import CASE_MODALITY

from peft_ladder import apply_strategy, load_adapted, load_backbone, save_adapted
from peft_ladder.hub.export import export
from peft_ladder.hub.stock import stock_loading

pytestmark = pytest.mark.slow
COMMIT = "0" * 40
LABELS = ["network", "files", "text"]
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
BERT_ID = "org/tiny-bert"
# family -> (where the base comes from, pooling)
FAMILIES = {
    "text_pooler": (BERT_ID, "pooler"),
    "text_mean": (MINILM_ID, None),  # the checkpoint's own sentence-transformers pooling: mean, L2-normalised
    "text_token": (MINILM_ID, "token"),  # a tagger: a head on every token, `...ForTokenClassification`
    "timm": ("timm_resnet", None),
    "hf_image": ("hf_vit", None),
}
KINDS = {"adapter": "lora", "delta": "partial_unfreeze", "full": "full", "scratch": "scratch", "export": "lora"}
# (kind, family) -> does the first stock call reproduce the rung? Refusing rows must name what to call instead.
SAME_LOGITS = {
    ("adapter", "text_pooler"): True,
    ("adapter", "text_token"): True,
    ("adapter", "text_mean"): False,
    ("adapter", "timm"): True,
    ("adapter", "hf_image"): True,
    **{("delta", family): False for family in FAMILIES},
    **{(kind, family): True for kind in ("full", "scratch", "export") for family in FAMILIES},
}
ROWS = sorted(SAME_LOGITS)

STOCK = r"""
import json, sys, traceback
import torch
from safetensors.torch import load_file

manifest = json.loads(open(sys.argv[1]).read())
inputs = load_file(sys.argv[2])
results = {}
late = []


def attempt(fn):
    try:
        return {"ok": fn()}
    except Exception as err:  # the stock libraries' own error, as the user sees it
        return {"error": type(err).__name__, "message": str(err)[:2000]}


for key, row in manifest.items():
    folder, base, labels = row["folder"], row["base"], row["labels"]
    batch = {k[len(key) + 1:]: v for k, v in inputs.items() if k.startswith(key + ".")}
    layout, modality, source = row["layout"], row["modality"], row["source"]
    tried = {}

    if source == "timm":
        import timm

        if layout == "adapter":
            from peft import PeftModel

            def first():
                names = json.load(open(f"{folder}/config.json"))["label_names"]
                model = PeftModel.from_pretrained(
                    timm.create_model(f"local-dir:{base}", pretrained=True, num_classes=len(names)), folder
                )
                return model.eval()(batch["pixel_values"]), names
        else:
            def first():
                model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
                return model(batch["pixel_values"]), model.pretrained_cfg.get("label_names")
    elif modality == "image":
        from transformers import AutoConfig, AutoModelForImageClassification

        if layout == "adapter":
            from peft import PeftModel

            def first():
                config = AutoConfig.from_pretrained(folder)
                base_model = AutoModelForImageClassification.from_pretrained(
                    base, num_labels=config.num_labels, id2label=config.id2label, label2id=config.label2id,
                    ignore_mismatched_sizes=True,
                )
                model = PeftModel.from_pretrained(base_model, folder).eval()
                return model(**batch).logits, [config.id2label[i] for i in range(config.num_labels)]
        else:
            def first(**trust):
                model = AutoModelForImageClassification.from_pretrained(folder, **trust).eval()
                return model(**batch).logits, [model.config.id2label[i] for i in range(model.config.num_labels)]

            tried["trusted"] = attempt(lambda: first(trust_remote_code=True) and 1)
    else:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

        auto = AutoModelForTokenClassification if row["tagger"] else AutoModelForSequenceClassification
        if layout == "adapter":
            from peft import AutoPeftModelForSequenceClassification, AutoPeftModelForTokenClassification

            auto_peft = AutoPeftModelForTokenClassification if row["tagger"] else AutoPeftModelForSequenceClassification
            # Without the labels first: peft builds the base from the base's own config.
            tried["no_labels"] = attempt(lambda: auto_peft.from_pretrained(folder) and 1)
            allow = ["peft_ladder.backbones.text_classifier"]  # what peft asks for when the adapter names our class
            # Last: it imports peft_ladder's class, which then refuses.
            late.append((tried, lambda folder=folder, auto_peft=auto_peft: auto_peft.from_pretrained(
                folder, import_allowlist=allow
            ) and 1))

            def first():
                config = AutoConfig.from_pretrained(folder)
                model = auto_peft.from_pretrained(
                    folder, num_labels=config.num_labels, id2label=config.id2label, label2id=config.label2id,
                    ignore_mismatched_sizes=True,
                ).eval()
                return model(**batch).logits, [config.id2label[i] for i in range(config.num_labels)]
        else:
            def first():
                model = auto.from_pretrained(folder).eval()
                return model(**batch).logits, [model.config.id2label[i] for i in range(model.config.num_labels)]

            def trusted():
                model = auto.from_pretrained(folder, trust_remote_code=True).eval()
                return model(**batch).logits, [model.config.id2label[i] for i in range(model.config.num_labels)]

            tried["trusted"] = attempt(lambda: [trusted()[0].tolist(), trusted()[1]])
    with torch.no_grad():
        tried["first"] = attempt(lambda: (lambda out: [out[0].tolist(), out[1]])(first()))
    results[key] = tried
assert not any(m.startswith("peft_ladder") for m in sys.modules), "a stock load imported peft_ladder"
for tried, call in late:
    tried["allowlisted"] = attempt(call)
open(sys.argv[3], "w").write(json.dumps(results))
"""


def _hub_cache(root: Path, repos: dict[str, Path]) -> Path:
    """A Hugging Face cache holding each folder under its Hub id, as a download leaves it, with the config's
    task labels removed (a pretrained base on the Hub has none)."""
    cache = root / "hf_cache"
    for repo_id, folder in repos.items():
        repo = cache / f"models--{repo_id.replace('/', '--')}"
        snapshot = repo / "snapshots" / COMMIT
        shutil.copytree(folder, snapshot)
        config = json.loads((snapshot / "config.json").read_text())
        for key in ("id2label", "label2id", "num_labels", "architectures"):
            config.pop(key, None)
        (snapshot / "config.json").write_text(json.dumps(config))
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(COMMIT)
    return cache


def _export_layout(folder: Path, family: str) -> str:
    if family == "timm":
        return "export-timm"
    return "export-remote-code" if (folder / "modeling_peft_ladder.py").is_file() else "export-transformers"


def _perturb(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def _batch(family: str, folder: Path) -> dict[str, torch.Tensor]:
    if family.startswith("text"):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
        texts = ["open the socket and send bytes", "read the file line by line", "split on commas"]
        return dict(tokenizer(texts, padding=True, return_tensors="pt"))
    return {"pixel_values": torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))}


@pytest.fixture(scope="module")
def stock_results(tmp_path_factory, tiny_dirs, minilm_dir):
    """Every row's folder made here, then tried with stock tools in one fresh process."""
    root = tmp_path_factory.mktemp("stock_loading")
    cache = _hub_cache(root, {MINILM_ID: minilm_dir, BERT_ID: tiny_dirs["hf_bert"]})
    from huggingface_hub import constants

    with pytest.MonkeyPatch.context() as mp:  # this process loads the text bases from the cache too
        mp.setattr(constants, "HF_HUB_CACHE", str(cache))
        manifest, inputs, expected, metas = {}, {}, {}, {}
        for kind, family in ROWS:
            key = f"{kind}-{family}"
            source, pooling = FAMILIES[family]
            name = f"hf:{source}" if family.startswith("text") else str(tiny_dirs[source])
            kwargs = {"pooling": pooling} if pooling else {}
            backbone = load_backbone(name, label_names=LABELS, pretrained=kind != "scratch", **kwargs)
            adapted = apply_strategy(backbone, KINDS[kind])
            _perturb(adapted.model)
            folder = Path(save_adapted(adapted, root / key / "rung"))
            meta = json.loads((folder / "peft_ladder.json").read_text())
            metas[key] = (meta, stock_loading(meta))
            restored = load_adapted(folder).model.eval()
            if kind == "export":
                folder = export(folder, root / key / "export")
                metas[key] = (meta, stock_loading(meta, layout=_export_layout(folder, family)))
            batch = _batch(family, folder)
            with torch.no_grad():
                out = restored(**batch) if family != "timm" else restored(batch["pixel_values"])
            expected[key] = (out.logits if hasattr(out, "logits") else out).detach()
            inputs.update({f"{key}.{k}": v.contiguous() for k, v in batch.items()})
            base = str(tiny_dirs[source]) if not family.startswith("text") else source
            manifest[key] = {
                "folder": str(folder),
                "base": base,
                "labels": LABELS,
                "layout": "full" if kind in ("export", "scratch") else kind,
                "modality": CASE_MODALITY.get(source, "text"),
                "source": "timm" if family == "timm" else "hf",
                "tagger": family == "text_token",
            }
    (root / "manifest.json").write_text(json.dumps(manifest))
    save_file(inputs, str(root / "inputs.safetensors"))
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", STOCK, *(str(root / f) for f in ("manifest.json", "inputs.safetensors", "out.json"))],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        stdin=subprocess.DEVNULL,  # transformers asks before running a folder's code only on a terminal
        cwd=root,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((root / "out.json").read_text()), expected, metas


@pytest.mark.parametrize("kind, family", ROWS, ids=[f"{k}-{f}" for k, f in ROWS])
def test_the_first_stock_call_reproduces_the_rung_or_refuses_saying_what_to_call(stock_results, kind, family):
    results, expected, metas = stock_results
    key = f"{kind}-{family}"
    tried = results[key]
    meta, claimed = metas[key]
    assert claimed.same_logits == SAME_LOGITS[(kind, family)]  # what cards and peft_ladder.json tell users
    first = tried["first"]
    plain_transformers = family.startswith("text") and kind != "adapter"
    if SAME_LOGITS[(kind, family)] and not (plain_transformers and family == "text_mean"):
        assert "ok" in first, first
        logits, labels = first["ok"]
        assert labels == LABELS
        torch.testing.assert_close(torch.tensor(logits), expected[key], rtol=0, atol=1e-4)
        return
    # Refused: never a model that loads and predicts wrong.
    assert "error" in first, f"{key} loaded with a stock call that should refuse it"
    if plain_transformers and family == "text_mean" and kind != "delta":
        # A mean-pooled whole model: transformers asks for trust_remote_code, and with it loads the right model.
        assert "trust_remote_code" in first["message"]
        logits, labels = tried["trusted"]["ok"]
        assert labels == LABELS
        torch.testing.assert_close(torch.tensor(logits), expected[key], rtol=0, atol=1e-4)
        return
    if kind == "adapter":  # a mean-pooled adapter: peft will not import the model class it names, which refuses
        assert "peft_ladder" in tried["no_labels"]["message"]
        assert "load_adapted" in tried["allowlisted"]["message"] and "export" in tried["allowlisted"]["message"]
    elif family == "timm":  # timm names the message as the architecture it cannot find
        assert "load_adapted" in first["message"] and "export" in first["message"]
    else:  # transformers' refusal first, then ours, which names what to call
        assert "trust_remote_code" in first["message"]
        assert "load_adapted" in tried["trusted"]["message"] and "peft-ladder export" in tried["trusted"]["message"]


def test_an_adapter_without_the_labels_is_refused_by_stock_peft(stock_results):
    """peft builds the base from the base's own config (no task labels): the head's size stops it."""
    results, _, _ = stock_results
    assert "error" in results["adapter-text_pooler"]["no_labels"]


LOCAL_BASE = r"""
import json, sys, torch
from safetensors.torch import load_file
from transformers import AutoConfig
from peft import AutoPeftModelForSequenceClassification

folder, inputs = sys.argv[1], load_file(sys.argv[2])
config = AutoConfig.from_pretrained(folder)
model = AutoPeftModelForSequenceClassification.from_pretrained(
    folder, num_labels=config.num_labels, id2label=config.id2label, label2id=config.label2id,
    ignore_mismatched_sizes=True,
).eval()
with torch.no_grad():
    got = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
assert not any(m.startswith("peft_ladder") for m in sys.modules)
print(float((got - inputs["expected"]).abs().max()))
"""


def test_an_adapter_on_a_local_base_names_its_path_here_and_its_folder_name_when_shared(tiny_dirs, tmp_path):
    """On the machine that trained it, stock peft finds a local base by the adapter's own config (offline, no
    Hub); an exported or pushed copy names the folder only."""
    base = tiny_dirs["hf_bert"]
    adapted = apply_strategy(load_backbone(str(base), label_names=LABELS, pooling="pooler"), "lora")
    _perturb(adapted.model)
    folder = Path(save_adapted(adapted, tmp_path / "rung"))
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base.resolve())
    shared = export(folder, tmp_path / "shared", merge=False)
    assert json.loads((shared / "adapter_config.json").read_text())["base_model_name_or_path"] == base.name
    batch = {"input_ids": torch.randint(1, 60, (3, 10), generator=torch.Generator().manual_seed(0))}
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    with torch.no_grad():
        batch["expected"] = load_adapted(folder).model.eval()(**batch).logits
    save_file(batch, str(tmp_path / "inputs.safetensors"))
    done = subprocess.run(
        [sys.executable, "-c", LOCAL_BASE, str(folder), str(tmp_path / "inputs.safetensors")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-4
