"""``jobqueue operator run``: the operator's entry point (kopf with our handlers).

jobqueue operator run --namespace team-a --namespace team-b
jobqueue operator run --all-namespaces --leader-elect          # HA: replicas share one Lease

One replica by default. With ``--leader-elect`` every replica competes for a coordination.k8s.io
Lease (``leader_election``) and only the holder acts; the ``--leader-elect-*`` flags are
controller-runtime's and kube-controller-manager's. kopf itself always runs standalone: its
peering is not used.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence

import kopf
import pydantic
from prometheus_client import CollectorRegistry, start_http_server

from jobqueue_operator import handlers, tunables
from jobqueue_operator.metrics import OperatorMetrics
from worker_runtime import exposition


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
    run.add_argument(
        "--standalone",
        action="store_true",
        help="One replica, no election (the default; kept for older command lines).",
    )
    election = tunables.LeaderElectionTunables()
    run.add_argument(
        "--leader-elect",
        action="store_true",
        help="Elect one active replica through a Lease; the others stand by.",
    )
    run.add_argument(
        "--leader-elect-lease-name",
        default=election.lease_name,
        help="Name of the Lease (default: %(default)s).",
    )
    run.add_argument(
        "--leader-elect-namespace",
        default=None,
        help="Namespace of the Lease (default: $POD_NAMESPACE, else the service account's).",
    )
    run.add_argument(
        "--leader-elect-id", default=None, help="This replica's identity (default: $POD_NAME_<random>)."
    )
    for flag, field_name in (
        ("--leader-elect-lease-duration", "lease_duration_seconds"),
        ("--leader-elect-renew-deadline", "renew_deadline_seconds"),
        ("--leader-elect-retry-period", "retry_period_seconds"),
    ):
        default = getattr(election, field_name)
        run.add_argument(flag, type=float, default=default, metavar="SECONDS", help=f"(default: {default:g})")
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
    'track' succeeded.", "Creation is processed") come with every watch event of every object, so
    they are shown with ``--verbose`` only; warnings and errors always are."""
    logging.getLogger().handlers.clear()
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.FULL)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").setLevel(logging.DEBUG if verbose else logging.WARNING)


def tunables_of(args: argparse.Namespace) -> tunables.Tunables:
    """The tunables the command line sets (the election); a bad combination exits with one line."""
    try:
        election = tunables.LeaderElectionTunables(
            enabled=args.leader_elect,
            lease_name=args.leader_elect_lease_name,
            lease_namespace=args.leader_elect_namespace,
            identity=args.leader_elect_id,
            lease_duration_seconds=args.leader_elect_lease_duration,
            renew_deadline_seconds=args.leader_elect_renew_deadline,
            retry_period_seconds=args.leader_elect_retry_period,
        )
    except pydantic.ValidationError as exc:
        reasons = "; ".join(str(error["msg"]).removeprefix("Value error, ") for error in exc.errors())
        raise SystemExit(f"jobqueue operator run: --leader-elect-*: {reasons}") from None
    return tunables.Tunables(leader_election=election)


def run(args: argparse.Namespace) -> None:
    """Run kopf with our handlers in this thread's loop; returns when kopf exits."""
    if not args.namespace and not args.all_namespaces:
        raise SystemExit("jobqueue operator run: give --namespace NS (repeatable) or --all-namespaces")
    if args.standalone and args.leader_elect:
        raise SystemExit("jobqueue operator run: --standalone and --leader-elect exclude each other")
    tuned = tunables_of(args)
    configure_logging(verbose=args.verbose)
    registry = kopf.OperatorRegistry()
    handlers.register(registry)
    kopf.on.login(registry=registry, id="login")(handlers.login_and_remember)
    metrics_registry = CollectorRegistry()
    exposition.add_process_metrics(metrics_registry, "operator")
    metrics = OperatorMetrics(metrics_registry)
    if args.metrics_port:
        start_http_server(args.metrics_port, registry=exposition.without_created(metrics_registry))
    asyncio.run(
        kopf.operator(
            registry=registry,
            standalone=True,
            liveness_endpoint=args.liveness,
            clusterwide=bool(args.all_namespaces),
            namespaces=list(args.namespace),
            memo=kopf.Memo(metrics=metrics, tunables=tuned),
        )
    )


def main(argv: Sequence[str]) -> None:
    """The ``jobqueue operator`` subcommand (``argv`` without the leading ``operator``)."""
    args = build_parser().parse_args(list(argv))
    if args.command == "run":
        run(args)
