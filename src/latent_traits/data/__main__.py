"""python -m latent_traits.data cards [--tasks a,b] [--out DIR] [--source offline|hub|local]
python -m latent_traits.data check [--tasks a,b] [--source hub|offline|local] [--n 16]"""

from __future__ import annotations

import argparse
import logging

from latent_traits.data.cards import write_cards
from latent_traits.data.catalog import load_task_spec, task_names
from latent_traits.data.check import check_task
from latent_traits.errors import exit_on_user_error


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m latent_traits.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cards = sub.add_parser("cards", help="write a Markdown data card per task and an index")
    cards.add_argument("--tasks", default=None, help="comma-separated task names (default: every task)")
    cards.add_argument("--out", default=None,
                       help="output folder (default: ${LATENT_TRAITS_ARTIFACTS:-artifacts}/data_cards)")
    cards.add_argument("--source", default="offline", choices=["offline", "hub", "local"])
    cards.add_argument("--local-path", default=None, help="with --source local: the file (or a path with {split})")
    cards.add_argument("--test-fraction", type=float, default=0.3)
    check = sub.add_parser("check", help="load a few rows of each task and check columns, labels, ids and answers")
    check.add_argument("--tasks", default=None, help="comma-separated task names (default: every task)")
    check.add_argument("--source", default="hub", choices=["offline", "hub", "local"])
    check.add_argument("--local-path", default=None, help="with --source local: the file (or a path with {split})")
    check.add_argument("--n", type=int, default=16, help="rows read per split")
    return parser.parse_args(argv)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    if args.command == "cards":
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
        index = write_cards(tasks, args.out, source=args.source, local_path=args.local_path,
                            test_fraction=args.test_fraction)
        print(index)
    elif args.command == "check":
        names = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else task_names()
        for name in names:
            print("\n".join(check_task(load_task_spec(name), args.source, args.n, args.local_path)), flush=True)


if __name__ == "__main__":
    main()
