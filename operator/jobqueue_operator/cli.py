"""``jobqueue operator run``: the operator's entry point (kopf with our handlers, standalone by default).

jobqueue operator run --namespace team-a --namespace team-b
jobqueue operator run --all-namespaces --peering default --priority 100
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence

import kopf
from prometheus_client import CollectorRegistry, start_http_server

from jobqueue_operator import handlers
from jobqueue_operator.metrics import OperatorMetrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobqueue operator", description="The JobQueue operator.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="Run the operator until SIGTERM/SIGINT.")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="Serve this namespace (repeatable; globs allowed).",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="Serve every namespace.")
    peering = run.add_mutually_exclusive_group()
    peering.add_argument(
        "--standalone", action="store_true", help="No peering (the default: one operator replica)."
    )
    peering.add_argument("--peering", metavar="NAME", help="Use the kopf peering object NAME (HA replicas).")
    run.add_argument(
        "--priority", type=int, default=None, help="Peering priority; the highest one is active."
    )
    run.add_argument(
        "--liveness",
        metavar="URL",
        default=None,
        help="kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz.",
    )
    run.add_argument("--metrics-port", type=int, default=8080, help="Port of /metrics; 0 turns it off.")
    run.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    return parser


def configure_logging(*, verbose: bool) -> None:
    """One handler on the root logger, in kopf's format (a handler set up earlier, such as the
    ``jobqueue`` command's, would print every line twice). kopf's per-object INFO lines ("Handler
    'fleet' succeeded.", "Creation is processed") come with every watch event of every object, so
    they are shown with ``--verbose`` only; warnings and errors always are."""
    logging.getLogger().handlers.clear()
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.FULL)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").setLevel(logging.DEBUG if verbose else logging.WARNING)


def run(args: argparse.Namespace) -> None:
    """Run kopf with our handlers in this thread's loop; returns when kopf exits."""
    if not args.namespace and not args.all_namespaces:
        raise SystemExit("jobqueue operator run: give --namespace NS (repeatable) or --all-namespaces")
    configure_logging(verbose=args.verbose)
    registry = kopf.OperatorRegistry()
    handlers.register(registry)
    kopf.on.login(registry=registry, id="login")(handlers.login_and_remember)
    metrics_registry = CollectorRegistry()
    metrics = OperatorMetrics(metrics_registry)
    if args.metrics_port:
        start_http_server(args.metrics_port, registry=metrics_registry)
    asyncio.run(
        kopf.operator(
            registry=registry,
            standalone=args.peering is None,
            peering_name=args.peering,
            priority=args.priority,
            liveness_endpoint=args.liveness,
            clusterwide=bool(args.all_namespaces),
            namespaces=list(args.namespace),
            memo=kopf.Memo(metrics=metrics),
        )
    )


def main(argv: Sequence[str]) -> None:
    """The ``jobqueue operator`` subcommand (``argv`` without the leading ``operator``)."""
    args = build_parser().parse_args(list(argv))
    if args.command == "run":
        run(args)
