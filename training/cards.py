"""Rewrite every model card's markdown from what the training runs stored (the cards' JSON
and the registry), without training anything.

    python -m training.cards [--out weights]

Each trainer writes its card when it runs; this re-renders them all, e.g. after a change to
a card's wording or to a training command's name.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training import train_blink, train_eyes, train_fascue, train_spoofcue
from training.common import WEIGHTS_OUT, card_markdown
from training.train_iqa import IQA_SUMMARY
from training.train_texture import texture_card


def render(out: Path) -> dict[str, str]:
    """Card name -> its markdown."""
    from facegate.weights import read_registry

    cards, registry = out / "cards", read_registry(out / "registry.json")

    def report(name: str) -> dict:
        return json.loads((cards / f"{name}.json").read_text())

    md = {name: texture_card(name, report(name)) for name in ("texture_cnn", "resnet18_texture")}
    md["iqa_lda"] = card_markdown("iqa_lda", report("iqa_lda"), IQA_SUMMARY,
                                  "`python -m training.train_iqa`")
    md["spoof_cue_scratch"] = train_spoofcue.card_markdown(report("spoof_cue_scratch"), cards)
    md["spoof_cue"] = train_fascue.markdown(report("spoof_cue"), cards)
    md["eye_state"] = train_eyes.card_markdown(registry["eye_state"])
    md["blink"] = train_blink.card_markdown(registry["blink"])
    return md


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.cards")
    ap.add_argument("--out", type=Path, default=WEIGHTS_OUT)
    args = ap.parse_args(argv)
    for name, text in render(args.out).items():
        path = args.out / "cards" / f"{name}.md"
        path.write_text(text)
        print("->", path)


if __name__ == "__main__":
    main()
