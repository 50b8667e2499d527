"""How well spoken requests reach the notes tools: recall, argument accuracy, false calls.

Scores the offline path's router (voicebot/services/intents.py) on
bench/tool_requests.json, a set written without looking at the router: 161
requests phrased many ways and 84 sentences that must not call a tool, some of
them with note-like words in other senses.

    .venv/bin/python bench/bench_tools.py [--misses] [--sweep] [--set bench/tool_requests_2.json]

`--sweep` chooses the classifier's threshold without touching that set: five-fold
cross-validation on the classifier's own training sentences
(voicebot/services/intent_training.json), patterns included, at each threshold.

A request counts as recalled when the right tool is called; its arguments are
right when the words the set names appear in them (a title, a body, a query, or
"latest" for "my last note").
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot.services.intents import parse  # noqa: E402

SET = ROOT / "bench" / "tool_requests.json"


def args_ok(expected: dict[str, Any], got: dict[str, Any]) -> bool:
    text = {k: str(v).lower() for k, v in got.items()}
    if expected.get("latest") and not got.get("latest"):
        return False
    if "title_contains" in expected and expected["title_contains"] not in text.get("title", ""):
        return False
    body = text.get("body", "") + " " + text.get("title", "")
    if any(word not in body for word in expected.get("body_contains", [])):
        return False
    if "query_contains" in expected and expected["query_contains"] not in text.get("query", ""):
        return False
    return True


def score(items: list[dict[str, Any]]) -> dict[str, Any]:
    per_tool: Counter[str] = Counter()
    recalled: Counter[str] = Counter()
    exact: Counter[str] = Counter()
    false_calls, misses = [], []
    for item in items:
        intent = parse(item["text"])
        if item["tool"] is None:
            if intent is not None:
                false_calls.append((item["id"], item["text"], intent.tool))
            continue
        per_tool[item["tool"]] += 1
        if intent is not None and intent.tool == item["tool"]:
            recalled[item["tool"]] += 1
            if args_ok(item.get("args", {}), intent.arguments):
                exact[item["tool"]] += 1
            else:
                misses.append((item["id"], item["text"], intent.tool, intent.arguments))
        else:
            misses.append((item["id"], item["text"], intent.tool if intent else None, None))
    positives = sum(per_tool.values())
    negatives = sum(1 for i in items if i["tool"] is None)
    return {"positives": positives, "negatives": negatives,
            "recall": sum(recalled.values()) / positives, "args_right": sum(exact.values()) / positives,
            "false_calls": len(false_calls), "false_call_rate": len(false_calls) / negatives,
            "by_tool": {t: {"n": n, "recall": recalled[t] / n, "args_right": exact[t] / n}
                        for t, n in sorted(per_tool.items())},
            "false": false_calls, "misses": misses}


def sweep(folds: int = 5) -> None:
    """Recall and false calls on held-out training sentences, at each threshold."""
    import numpy as np

    from voicebot.services import intent_model
    from voicebot.services.embeddings import shared as encoder
    from voicebot.services.intents import _FILLER, decide

    items = json.loads(intent_model.TRAINING.read_text())["items"]
    texts = [i["text"] for i in items]
    x = np.stack([intent_model.features(e, t)
                  for e, t in zip(intent_model._embed(encoder(), texts, intent_model.model_dir()), texts)])
    tags = [i["tool"] or intent_model.CHAT for i in items]
    labels = sorted(set(tags))
    y = np.array([labels.index(t) for t in tags])
    order = np.random.default_rng(0).permutation(len(items))
    held_out: list[dict[str, float]] = [{}] * len(items)
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        w, b = intent_model.fit(x[train], y[train], len(labels), labels.index(intent_model.CHAT))
        for row, i in zip(intent_model._softmax(x[test] @ w + b), test):
            held_out[i] = dict(zip(labels, row.tolist()))
    sentences = [_FILLER.sub("", item["text"].strip()) for item in items]
    print(f"{folds}-fold cross-validation on {len(items)} training sentences (patterns vetoed at "
          f"chat >= {intent_model.VETO})")
    print(f"{'threshold':>9}{'recall':>9}{'false calls':>13}")
    for threshold in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
        hit = false = positives = 0
        for item, sentence, probabilities in zip(items, sentences, held_out):
            intent = decide(sentence, probabilities, threshold)
            if item["tool"] is None:
                false += intent is not None
            else:
                positives += 1
                hit += intent is not None and intent.tool == item["tool"]
        print(f"{threshold:>9.2f}{hit / positives:>9.1%}{false:>13}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--misses", action="store_true", help="list every miss and false call")
    parser.add_argument("--sweep", action="store_true", help="choose the threshold on the training set")
    parser.add_argument("--set", type=Path, default=SET,
                        help="the set to score (bench/tool_requests_2.json: the second blind set)")
    options = parser.parse_args()
    if options.sweep:
        sweep()
        return
    result = score(json.loads(options.set.read_text())["items"])
    print(f"requests {result['positives']}, non-requests {result['negatives']}")
    print(f"tool recall {result['recall']:.1%}  arguments right {result['args_right']:.1%}  "
          f"false calls {result['false_calls']} ({result['false_call_rate']:.1%})")
    print(f"{'tool':<14}{'n':>4}{'recall':>9}{'args':>8}")
    for tool, row in result["by_tool"].items():
        print(f"{tool:<14}{row['n']:>4}{row['recall']:>9.0%}{row['args_right']:>8.0%}")
    if options.misses:
        for miss in result["misses"]:
            print("MISS ", *miss)
        for false in result["false"]:
            print("FALSE", *false)


if __name__ == "__main__":
    main()
