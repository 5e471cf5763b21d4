"""The operator's one control loop: every tick, a pass for each JobQueue whose pollingInterval is due.

One asyncio task for the whole operator (started by the startup handler) instead of a kopf timer
per object: a timer is a task, a daemon record and a log line per object and tick, and each of its
passes read its own Deployment and listed the namespace's HPAs. The loop acts only while
``leading()`` says so (``leader_election``; always, without it): a standby replica ticks, but
probes, reads and writes nothing, and a lost Lease cancels the batches in flight. A tick takes the
due members of the ``served`` JobQueues and runs them as one batch:

1. per namespace, one LIST of the owned worker Deployments (by the ``managed-by`` label) and one
   LIST of HorizontalPodAutoscalers; a Deployment named by ``spec.workers.deploymentRef`` is read
   on its own;
2. conflicts between JobQueues over a Deployment (``conflicts``): the younger gets no pass;
3. per Secret, the Redis URL and TLS material (``secrets.UrlCache`` reuses them for
   ``secrets.url_cache_seconds``), and conflicts over a Redis queue;
4. per Redis URL and TLS options, one pipelined probe of all its queues (``prober``; one pipeline
   per node on a Cluster; a queue that fails is reported alone);
5. per member, at most ``loop.pass_concurrency`` at once, ``member_pass.PassRunner.act``: the owned
   Deployment created or brought up to date, the scaling pass, status, conditions, Events, metrics.

A batch runs in the background, so the next tick starts on time, and a member joins no other batch
until its pass is over: an unreachable Redis URL holds up only its own queues. A pass that fails
(an API error) is retried on the next tick. Besides the passes, the leader removes the finalizer
earlier versions added from the JobQueues that still carry it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from jobqueue_operator import (
    conflicts,
    flow_sync,
    kube_api,
    member_pass,
    secrets,
    served,
    spec,
    status,
    tunables,
    worker_deployment,
)
from jobqueue_operator.kube_actuator import conflicting_hpa
from jobqueue_operator.member_pass import Pass
from jobqueue_operator.metrics import OperatorMetrics
from jobqueue_operator.prober import ProbeError, Prober

logger = logging.getLogger(__name__)

OWNED_SELECTOR: Final = f"app.kubernetes.io/managed-by={worker_deployment.MANAGED_BY}"

Body = dict[str, Any]


@dataclass(slots=True)
class Namespace:
    """What one batch read of a namespace: its worker Deployments by name and its HPAs."""

    deployments: dict[str, Body]
    hpas: list[Body]


def _always() -> bool:
    return True


class ControlLoop:
    """Runs the due passes of the served JobQueues every ``tick`` seconds while ``leading()``;
    ``start()`` it in the operator's event loop."""

    def __init__(
        self,
        jobqueues: served.ServedJobQueues,
        metrics: OperatorMetrics,
        api: Callable[[], kube_api.KubeApi],
        settings: tunables.Tunables | None = None,
        *,
        leading: Callable[[], bool] = _always,
    ) -> None:
        self.jobqueues = jobqueues
        self.metrics = metrics
        self.api = api
        self.settings = settings if settings is not None else tunables.Tunables()
        self.leading = leading
        self.prober = Prober(self.settings.probe)
        self.secret_urls = secrets.UrlCache(self.settings.secrets.url_cache_seconds)
        self.tick_seconds = self.settings.loop.tick_seconds
        self.passes = member_pass.PassRunner(jobqueues, metrics, self.settings)
        self._task: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._releasing: set[served.Key] = set()
        self._was_leading = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="jobqueue control loop")

    async def stop(self) -> None:
        """Cancel the loop and the batches in flight, then close the Redis clients."""
        tasks = [t for t in (self._task, *self._batches) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        await self.prober.close()

    def stopped_leading(self) -> None:
        """Leadership is lost: stop what is in flight at once (its writes are refused anyway), and
        let go of the Redis connections: a standby holds none."""
        for task in list(self._batches):
            task.cancel()
        if self._task is not None:  # not once the loop is stopped: stop() closes the clients
            self._spawn(self.prober.close(), "jobqueue prober close")

    def started_leading(self) -> None:
        """Leadership is won: what passes carried over may be stale, so read it back from status."""
        self.jobqueues.reset_memory()

    async def _run(self) -> None:
        clock = asyncio.get_running_loop()
        while True:
            started = clock.time()
            self.tick(time.time())
            await asyncio.sleep(max(0.0, self.tick_seconds - (clock.time() - started)))

    def tick(self, now: float) -> asyncio.Task[None] | None:
        """Start a batch of the members due at ``now`` (``None`` when none is, or not leading)."""
        leading = self.leading()
        self.metrics.is_leader.set(1 if leading else 0)
        if self._was_leading and not leading:
            self.stopped_leading()  # at once: the elector may hear of it only at its next attempt
        self._was_leading = leading
        if not leading:
            return None
        self._release_legacy_finalizers()
        due = self.jobqueues.due(now, self.tick_seconds)
        if not due:
            return None
        for member in due:
            member.busy = True
        return self._spawn(self.run_batch(due, now), "jobqueue control passes")

    def _spawn(self, work: Awaitable[None], name: str) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)
        return task

    # ------------------------------------------------------------------ one batch

    async def run_batch(self, members: list[served.ServedJobQueue], now: float) -> None:
        started = time.perf_counter()
        try:
            api = self.api()
            by_namespace: dict[str, list[served.ServedJobQueue]] = defaultdict(list)
            for member in members:
                by_namespace[member.namespace].append(member)
            listed = await asyncio.gather(
                *(self._namespace(api, ns, group) for ns, group in by_namespace.items())
            )
            views = dict(zip(by_namespace, listed, strict=True))
            reports: list[Awaitable[None]] = []
            passes: list[Pass] = []
            taken = conflicts.losers(self._deployment_claims())
            for member in members:
                self._plan(api, member, views.get(member.namespace), taken, now, passes, reports)
            for item in passes:  # before anything can count a probe error or a scale event
                self.metrics.serving(item.labels)
            by_url = await self._urls(api, passes)
            kept = {id(item) for item in self._queue_conflicts(api, passes, now, reports)}
            by_url = {url: [p for p in group if id(p) in kept] for url, group in by_url.items()}
            await asyncio.gather(
                *reports,
                *(self._observe_and_act(api, url, group, started, now) for url, group in by_url.items()),
            )
        except kube_api.NotLeading:
            pass  # leadership was lost during the batch
        except Exception as exc:  # the API is unreachable or not logged in yet: the next tick retries
            logger.warning("Control passes of %d JobQueues failed: %s", len(members), exc)
        finally:
            for member in members:
                member.busy = False

    async def _namespace(
        self, api: kube_api.KubeApi, namespace: str, members: list[served.ServedJobQueue]
    ) -> Namespace | None:
        """One LIST of owned Deployments and one of HPAs (and a GET per referenced Deployment)."""
        try:
            owned, hpas = await asyncio.gather(
                api.list_deployments(namespace, OWNED_SELECTOR), api.list_hpas(namespace)
            )
            deployments = {str(d["metadata"]["name"]): member_pass.slim(d) for d in owned}
            del owned
            referenced = {
                worker_deployment.worker_deployment_name(m.jobqueue)
                for m in members
                if m.jobqueue is not None and m.jobqueue.spec.workers.deployment_ref is not None
            } - set(deployments)
            for name, found in zip(
                referenced,
                await asyncio.gather(*(api.get_deployment(namespace, name) for name in referenced)),
                strict=True,
            ):
                if found is not None:
                    deployments[name] = member_pass.slim(found)
        except kube_api.ApiError as exc:
            logger.warning("Listing Deployments and HPAs of namespace %s failed: %s", namespace, exc)
            return None
        return Namespace(deployments, hpas)

    def _deployment_claims(self) -> list[conflicts.Claim]:
        """Every served JobQueue's claim on the Deployment it scales."""
        return [
            conflicts.deployment_claim(
                m.key, m.order, m.namespace, worker_deployment.worker_deployment_name(m.jobqueue)
            )
            for m in self.jobqueues
            if m.jobqueue is not None
        ]

    def _plan(
        self,
        api: kube_api.KubeApi,
        member: served.ServedJobQueue,
        view: Namespace | None,
        taken: dict[served.Key, str],
        now: float,
        passes: list[Pass],
        reports: list[Awaitable[None]],
    ) -> None:
        """Sort a member into a pass, a report without a pass (invalid spec, conflict, missing
        referenced Deployment), or nothing this tick (its namespace could not be read)."""
        jobqueue = member.jobqueue
        if jobqueue is None:
            error = member.error or spec.SpecError("spec", "unreadable")
            reports.append(self.passes.report(api, member, status.spec_invalid_conditions(error), now))
            return
        if member.key in taken:
            conflict = status.Problem(status.Reason.CONFLICT, taken[member.key])
            reports.append(self.passes.report(api, member, status.refused_conditions(conflict), now))
            return
        if view is None:
            return
        name = worker_deployment.worker_deployment_name(jobqueue)
        deployment = view.deployments.get(name)
        if deployment is None and jobqueue.spec.workers.deployment_ref is not None:
            message = f"spec.workers.deploymentRef: Deployment {member.namespace}/{name} not found"
            degraded = status.degraded_condition(status.Problem(status.Reason.DEPLOYMENT_NOT_FOUND, message))
            reports.append(self.passes.report(api, member, [degraded], now))
            return
        hpa = conflicting_hpa(view.hpas, name)
        blocked = None
        if hpa is not None:
            message = (
                f"HorizontalPodAutoscaler {hpa} also scales Deployment {name}; not scaling while it exists"
            )
            blocked = status.Problem(status.Reason.CONFLICTING_HPA, message)
        passes.append(Pass(member, jobqueue, deployment, blocked))

    async def _urls(
        self, api: kube_api.KubeApi, passes: list[Pass]
    ) -> dict[secrets.RedisTarget | None, list[Pass]]:
        """Passes by Redis URL and TLS options; those whose Secrets cannot be read come under
        ``None``, with the problem."""
        by_secret: dict[tuple[secrets.SecretKey, spec.TlsSpec], list[Pass]] = defaultdict(list)
        for item in passes:
            by_secret[secrets.key_of(item.jobqueue), item.jobqueue.spec.queue.redis.tls].append(item)

        async def url(group: list[Pass]) -> secrets.RedisTarget | None:
            try:
                return await self.secret_urls.redis_target(api, group[0].jobqueue)
            except secrets.SecretProblem as problem:
                for item in group:
                    item.problem = status.Problem(problem.reason, problem.message)
                    self.metrics.probe_errors.labels(*item.labels).inc()
                return None

        groups = list(by_secret.values())
        by_url: dict[secrets.RedisTarget | None, list[Pass]] = defaultdict(list)
        for found, group in zip(await asyncio.gather(*(url(g) for g in groups)), groups, strict=True):
            by_url[found].extend(group)
            for item in group:
                item.member.redis_target = (
                    None if found is None else (conflicts.redis_server(found.url), item.jobqueue.queue_name)
                )
        return by_url

    def _queue_conflicts(
        self, api: kube_api.KubeApi, passes: list[Pass], now: float, reports: list[Awaitable[None]]
    ) -> list[Pass]:
        """The passes left once JobQueues sharing a Redis queue with an older one are refused."""
        claims = [
            conflicts.queue_claim(m.key, m.order, *m.redis_target)
            for m in self.jobqueues
            if m.redis_target is not None
        ]
        taken = conflicts.losers(claims)
        kept = []
        for item in passes:
            if item.member.key in taken:
                conflict = status.Problem(status.Reason.CONFLICT, taken[item.member.key])
                reports.append(self.passes.report(api, item.member, status.refused_conditions(conflict), now))
            else:
                kept.append(item)
        return kept

    async def _observe_and_act(
        self,
        api: kube_api.KubeApi,
        target: secrets.RedisTarget | None,
        group: list[Pass],
        started: float,
        now: float,
    ) -> None:
        if target is not None and group:
            names = [item.jobqueue.queue_name for item in group]
            try:
                found = await self.prober.probe_many(target.url, names, target.tls)
            except ProbeError as error:
                for item in group:
                    item.problem = status.Problem(status.Reason.PROBE_FAILED, str(error))
                    self.metrics.probe_errors.labels(*item.labels).inc()
                    self.secret_urls.forget(item.jobqueue)  # the Secret may have been fixed since
            else:
                for item in group:
                    item.observation = found.observations.get(item.jobqueue.queue_name)
                    failed = found.errors.get(item.jobqueue.queue_name)
                    if failed is not None:
                        item.problem = status.Problem(status.Reason.PROBE_FAILED, failed)
                        self.metrics.probe_errors.labels(*item.labels).inc()
                await self._sync_flow(target, group)
        await asyncio.gather(*(self.passes.act(api, item, started, now) for item in group))

    async def _sync_flow(self, target: secrets.RedisTarget, group: list[Pass]) -> None:
        """Write each member's spec.flow where Redis disagrees, and fire the schedule ticks no worker
        fired (``flow_sync``), before its pass."""
        probed = [
            (i.jobqueue.queue_name, i.jobqueue.spec.flow, i.observation) for i in group if i.observation
        ]
        client = self.prober.client(target.url, target.tls)
        updated = await flow_sync.sync(client, probed)
        for item in group:
            item.observation = updated.get(item.jobqueue.queue_name, item.observation)
        await flow_sync.fire_due(client, [obs for _, _, obs in probed])

    # ------------------------------------------------------------------ the old finalizer

    def _release_legacy_finalizers(self) -> None:
        """Remove ``served.LEGACY_FINALIZER`` from the JobQueues that still carry it."""
        pending = dict(self.jobqueues.releases)
        for member in self.jobqueues:
            if member.legacy_finalizer is not None:
                pending[member.key] = member.legacy_finalizer
        for key, release in pending.items():
            if key not in self._releasing:
                self._releasing.add(key)
                self._spawn(self._release(key, release), "jobqueue finalizer release")

    async def _release(self, key: served.Key, release: served.Release) -> None:
        try:
            # The other finalizers stay; the resourceVersion makes a stale list fail (409), not win.
            kept = list(release.others) or None
            patch = {"metadata": {"finalizers": kept, "resourceVersion": release.version}}
            await self.api().patch_jobqueue(*key, patch)
        except kube_api.NotLeading:
            pass
        except Exception as exc:  # 409: the object moved on; its next watch event brings the version
            logger.info("%s/%s: removing the old finalizer: %s", *key, exc)
        finally:
            self._releasing.discard(key)
