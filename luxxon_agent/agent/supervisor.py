"""Supervisor: the agent process, `startup -> run -> shutdown(timeout)`, like uvicorn's Server.

- startup: state file, device keys (one per operator, shared by default), one
  `OperatorRunner` per [[operators]] table, one `WorkspaceLink` per API key, the
  status endpoint; then READY=1.
- run: a TaskGroup with each operator's position follower, each link
  (resume from the state file what needs no API, connect, recover the rest,
  then availability / heartbeat / intake), a task per session, the watchdog
  (`stalled`: local work only, an API outage is not a stall) and STATUS=.
- shutdown: SIGINT/SIGTERM only set an Event; links stop taking work, each
  session ends or is left LIVE per `on_sigterm`. Links get
  `shutdown_timeout_seconds`; a session that ends gets that plus its drain and
  /end budget (`shutdown_budget_seconds`), after which the stragglers are
  cancelled (and counted in the log). A second SIGINT cancels at once.

An unexpected exception in a session, a link, a position follower or the
status/watchdog tick is logged once and that part restarts with backoff
(RESTART_BACKOFF, `_restarting`: bugs only; the video retries itself);
the process itself keeps serving the other operators.

Ownership (docs/architecture.md): links hand sessions over as
`SessionAssigned` events on one queue and are told `release(label)` when a
run is over; `status()` is the one place an `OperatorStatus` is assembled,
from the link's, the run's and the operator's snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from luxxon_agent import __version__
from luxxon_agent.agent.config import AgentConfig, OnSigterm
from luxxon_agent.agent.context import ApiHealth
from luxxon_agent.agent.credentials import load_device_signer, resolve_agent_key
from luxxon_agent.agent.operator import OperatorRunner
from luxxon_agent.agent.sdnotify import SdNotifier
from luxxon_agent.agent.session import (
    END_BUDGET_S,
    SHUTDOWN_DRAIN_MAX_S,
    Outcome,
    SessionRun,
    SessionSnapshot,
    still_ours,
)
from luxxon_agent.agent.statefile import StateFile
from luxxon_agent.agent.status import AgentStatus, OperatorStatus, SessionPhase
from luxxon_agent.agent.workspace import SessionAssigned, WorkspaceLink
from luxxon_agent.backoff import Backoff
from luxxon_agent.clock import SYSTEM_CLOCK, Clock, sleep_or_event
from luxxon_agent.errors import (
    EXIT_AUTH,
    EXIT_OK,
    EXIT_STARTUP_FAILURE,
    AuthError,
    LuxxonError,
)
from luxxon_agent.secret import Secret
from luxxon_agent.signals import stop_on_signals
from luxxon_agent.wire import SPOOL_FILE_NAME

if TYPE_CHECKING:
    from luxxon_agent.agent.status_server import StatusServer
    from luxxon_agent.api import AsyncLuxxonClient
    from luxxon_agent.eip712 import KeySigner
    from luxxon_agent.telemetry import Spool

logger = logging.getLogger(__name__)

RESTART_BACKOFF = Backoff(initial=1.0, maximum=30.0)
"""Between restarts of a link or a session run that crashed (a bug, not the network)."""
STATUS_TICK_S = 1.0


class AgentPhase(StrEnum):
    """Where the process is; changed only by `Supervisor._set_phase`."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass
class _Progress:
    """A counter and when it last moved, for the watchdog."""

    value: float | None = None
    moved_at: float | None = None

    def update(self, value: float | None, now: float) -> None:
        if value is not None and value != self.value:
            self.value, self.moved_at = value, now


class Supervisor:
    def __init__(
        self,
        config: AgentConfig,
        *,
        env: Mapping[str, str],
        clock: Clock = SYSTEM_CLOCK,
        notifier: SdNotifier | None = None,
    ) -> None:
        self.config = config
        self.env = env
        self.clock = clock
        self.notifier = notifier or SdNotifier(env)
        self.should_exit = asyncio.Event()
        self.exit_code = EXIT_OK
        self.api_health = ApiHealth(clock)
        self.operators: list[OperatorRunner] = []
        self.links: list[WorkspaceLink] = []
        self.runs: dict[str, SessionRun] = {}
        """Operator label -> the run serving its session now."""
        self.status_server: StatusServer | None = None
        """Serving `status()`, from startup on (when `[status] listen` names one)."""
        self.phase = AgentPhase.STARTING
        self._assignments: asyncio.Queue[SessionAssigned] = asyncio.Queue()
        self._link_of: dict[str, WorkspaceLink] = {}
        self._served: dict[str, int] = {}
        """Operator label -> sessions it saw through LIVE (not the dropped or given up)."""
        self._crashes: dict[str, str] = {}
        """Operator label -> the error that ended its current session's last run; cleared
        when a run of it goes through and when the next session begins."""
        self._earned_before: dict[str, int] = {}
        """Operator label -> estimated earnings of its sessions that are over."""
        self._finished: dict[str, SessionSnapshot] = {}
        """Operator label -> its last run's final figures, shown until the next run."""
        self._spools: dict[str, Spool] = {}
        self._signers: dict[str, KeySigner] = {}
        """Operator label -> the device key that signs its telemetry."""
        self._clients: list[AsyncLuxxonClient] = []
        self._group: asyncio.TaskGroup | None = None
        self._session_tasks: set[asyncio.Task[None]] = set()
        self._main_task: asyncio.Task[Any] | None = None
        self._force = False
        self._started_at = clock.now()
        self._state: StateFile | None = None
        self._progress: dict[str, _Progress] = {}

    # ---- the public face ----------------------------------------------------------------

    async def serve(self) -> int:
        """Run until a signal (or a fatal error); returns the exit code."""
        self._main_task = asyncio.current_task()
        try:
            with stop_on_signals(
                self.should_exit, on_stop=self._on_signal, on_force=self._force_exit
            ):
                await self.startup()
                self.notifier.ready(self.status_line())
                logger.info(
                    "agent ready: %d operator(s) in %d workspace link(s)",
                    len(self.operators),
                    len(self.links),
                )
                await self._run()
        except asyncio.CancelledError:
            if not self._force:
                raise
            logger.warning("forced exit: tasks cancelled")
        finally:
            await self._close()
        return self.exit_code

    def request_exit(self) -> None:
        if not self.should_exit.is_set():
            logger.info("shutting down (Ctrl-C again to force)")
            self.should_exit.set()

    def status(self) -> AgentStatus:
        """The agent's status now, assembled from its parts' snapshots.

        The one place an `OperatorStatus` is built: the status endpoint, the
        metrics, STATUS= and the demo all read what this returns.
        """
        now = self.clock.monotonic()
        last = self.api_health.last_ok
        return AgentStatus(
            version=__version__,
            pid=os.getpid(),
            started_at=self._started_at.isoformat(),
            api_base_url=self.config.api.base_url,
            api_ok=last is not None and now - last < self.config.agent.stall_seconds,
            api_last_ok_age_s=round(now - last, 1) if last is not None else None,
            api_last_error=self.api_health.last_error,
            state=self.phase.value,
            operators=[self._operator_status(op) for op in self.operators],
        )

    def _operator_status(self, runner: OperatorRunner) -> OperatorStatus:
        label = runner.label
        status = OperatorStatus(
            label=label,
            device_kind=runner.op.device_kind.value,
            sessions_served=self._served.get(label, 0),
            earned_total_micro_usdc=self._earned_before.get(label, 0),
            last_error=self._crashes.get(label),
            gps=runner.gps(),
        )
        link = self._link_of.get(label)
        if link is not None:
            view = link.view(label)
            status.workspace_id = view.workspace_id
            status.availability = view.availability
            status.reason = view.reason
            status.session_id = view.session_id
            status.operator_id = view.operator_id
        run = self.runs.get(label)
        if run is None:
            last = self._finished.get(label)
            if last is not None:  # the counts of the session just over stay in view
                status.video, status.telemetry = last.video, last.telemetry
        else:
            snap = run.snapshot()
            status.session_id = snap.session_id
            status.session_state = snap.phase
            status.session_started_at = snap.started_at
            status.max_duration_seconds = snap.max_duration_seconds
            status.rate_per_second_micro_usdc = snap.rate_per_second_micro_usdc
            status.live_seconds = snap.live_seconds
            status.earned_micro_usdc = snap.earned_micro_usdc
            status.earned_total_micro_usdc += snap.earned_micro_usdc
            status.last_error = snap.last_error or status.last_error
            status.video = snap.video
            status.telemetry = snap.telemetry
        return status

    def snapshot(self) -> dict[str, Any]:
        """`status()` as the endpoint's JSON body (redacted)."""
        return self.status().to_dict()

    def status_line(self) -> str:
        """One line for STATUS=: per operator its state and session (no churning figures)."""
        parts = []
        for s in self.status().operators:
            if s.session_id:
                state = s.session_state or SessionPhase.ASSIGNED
                parts.append(f"{s.label} {state.value} {s.session_id}")
            elif s.reason:
                parts.append(f"{s.label} OFFLINE: {s.reason}")
            else:
                parts.append(f"{s.label} {s.availability.value}")
        return "; ".join(parts)[:400] or self.phase.value

    def _set_phase(self, phase: AgentPhase) -> None:
        if phase is not self.phase:
            logger.info("agent %s -> %s", self.phase.value, phase.value)
            self.phase = phase

    # ---- signals ------------------------------------------------------------------------

    def _on_signal(self, sig: signal.Signals) -> None:
        logger.info("received %s", sig.name)
        self.request_exit()

    def _force_exit(self) -> None:
        self._force = True
        if self._main_task is not None:
            self._main_task.cancel()

    # ---- startup ------------------------------------------------------------------------

    async def startup(self) -> None:
        from luxxon_agent.api import AsyncLuxxonClient
        from luxxon_agent.telemetry import Spool

        agent = self.config.agent
        try:
            agent.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StartupError(f"state_dir {agent.state_dir}: {exc.strerror}") from None
        self._state = StateFile(agent.state_dir / "state.json")
        if agent.ice_loopback:
            from luxxon_agent.video import pin_ice_to_loopback

            pin_ice_to_loopback()
        by_file: dict[Path | None, KeySigner] = {}
        by_key: dict[Secret, list[OperatorRunner]] = {}
        for op_config in self.config.operators:
            runner = OperatorRunner(op_config, self.config, self.clock)
            key_file = op_config.device_key_file or agent.device_key_file
            if key_file not in by_file:
                by_file[key_file] = load_device_signer(key_file, self.env)
            self._signers[runner.label] = by_file[key_file]
            logger.info(
                "%s: telemetry signed by device key %s", runner.label, by_file[key_file].address
            )
            self.operators.append(runner)
            self._served[runner.label] = 0
            self._spools[runner.label] = Spool(runner.state_dir / SPOOL_FILE_NAME)
            key, origin = resolve_agent_key(
                op_config.api_key_file or self.config.api.key_file, self.env
            )
            logger.info("%s: API key from %s", runner.label, origin)
            by_key.setdefault(key, []).append(runner)
        for key, runners in by_key.items():
            client = AsyncLuxxonClient(
                self.config.api.base_url, api_key=key, timeout=self.config.api.timeout_seconds
            )
            await client.__aenter__()
            self._clients.append(client)
            link = WorkspaceLink(
                client,
                runners,
                self.config,
                self._state,
                self.clock,
                self.api_health,
                self._assignments,
                {r.label: self._signers[r.label].address for r in runners},
            )
            self.links.append(link)
            for runner in runners:
                self._link_of[runner.label] = link
        if self.config.status.listen:
            from luxxon_agent.agent.status_server import StatusServer

            self.status_server = StatusServer(
                self.config.status.listen, self.status, self.config.status.metrics
            )
            await self.status_server.start()

    # ---- running ------------------------------------------------------------------------

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            self._group = group
            # these run on through the wind-down (sessions still sample, STATUS= goes on)
            background = [
                group.create_task(
                    self._restarting(f"{op.label}: position", op.follow_position),
                    name=f"{op.label}.position",
                )
                for op in self.operators
            ]
            background.append(
                group.create_task(
                    self._restarting("status+watchdog", self._tick_loop), name="status+watchdog"
                )
            )
            background.append(group.create_task(self._dispatch_loop(), name="dispatch"))
            links = [
                group.create_task(self._run_link(link), name=repr(link)) for link in self.links
            ]
            self._set_phase(AgentPhase.RUNNING)
            await self.should_exit.wait()
            self._set_phase(AgentPhase.STOPPING)
            self.notifier.stopping("stopping: " + self.status_line())
            await self._wind_down(links)
            for link in self.links:
                await link.go_offline("agent stopped")
            for task in background:
                task.cancel()
        self._set_phase(AgentPhase.STOPPED)

    async def _wind_down(self, links: list[asyncio.Task[None]]) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        timeout = self.config.agent.shutdown_timeout_seconds
        pending = await _wait_for({t for t in links if not t.done()}, timeout)
        budget = shutdown_budget_seconds(self.config)
        for _ in range(2):  # sessions taken while the links wound down are waited for too
            while not self._assignments.empty():
                self._spawn_session(self._assignments.get_nowait())
            sessions = {t for t in self._session_tasks if not t.done()} - pending
            if not sessions:
                break
            pending |= await _wait_for(sessions, max(0.0, budget - (loop.time() - began)))
        if pending:
            logger.warning(
                "shutdown budget (%.0f s) spent: cancelling %d task(s): %s",
                budget,
                len(pending),
                ", ".join(sorted(t.get_name() for t in pending)),
            )
            for task in pending:
                task.cancel()

    async def _run_link(self, link: WorkspaceLink) -> None:
        link.resume_offline()  # before connect(): the API may be unreachable for a while

        async def connect_recover_run() -> None:
            if link.workspace_id is None and not await link.connect(self.should_exit):
                return
            if not link.recovered:  # retried after a failure, like the connect
                await link.recover()
            await link.run(self.should_exit)

        await self._restarting(repr(link), connect_recover_run, self.should_exit)

    async def _restarting(
        self, name: str, body: Callable[[], Awaitable[None]], stop: asyncio.Event | None = None
    ) -> None:
        """Run `body` until it returns (or `stop` is set); when it raises, log once and run it
        again after RESTART_BACKOFF. The supervisor's one catch-all: a bug in one part never
        cancels the task group, hence every other operator. An AuthError is fatal instead:
        the key is wrong for every part alike."""
        attempt = 0
        while stop is None or not stop.is_set():
            try:
                await body()
                return
            except Exception as exc:  # logged once below, then restarted
                errors = _leaves(exc)
                fatal = next((e for e in errors if isinstance(e, AuthError)), None)
                if fatal is not None:
                    logger.error("%s: %s", name, fatal)
                    self.exit_code = EXIT_AUTH
                    self.request_exit()
                    return
                for error in errors:
                    if isinstance(error, LuxxonError):
                        logger.error("%s failed: %s; restarting it", name, error)
                    else:
                        logger.error("%s crashed; restarting it", name, exc_info=error)
            delay = RESTART_BACKOFF.delay(attempt)
            if stop is None:
                await self.clock.sleep(delay)
            elif await sleep_or_event(self.clock, delay, stop):
                return
            attempt += 1

    async def _dispatch_loop(self) -> None:
        """Run each session a link hands over, as a task of its own."""
        while True:
            self._spawn_session(await self._assignments.get())

    def _spawn_session(self, assigned: SessionAssigned) -> None:
        assert self._group is not None
        task = self._group.create_task(
            self._serve_session(assigned),
            name=f"{assigned.runner.label}/{assigned.session.id}",
        )
        self._session_tasks.add(task)
        task.add_done_callback(self._session_tasks.discard)

    async def _serve_session(self, assigned: SessionAssigned) -> None:
        """Run one session to its end, retrying the run (not the session) after failures."""
        op, context, session = assigned.runner, assigned.context, assigned.session
        signer = self._signers[op.label]
        attempt = 0
        outcome = Outcome.FAILED
        self._crashes.pop(op.label, None)  # a new session: an older one's crash is history
        try:
            while True:
                run = SessionRun(
                    op, context, session, self.should_exit, self._spools[op.label], signer
                )
                self.runs[op.label] = run
                try:
                    outcome = await run.run()
                except Exception as exc:  # logged once, then the run (not the session) retries
                    self._crashes[op.label] = str(exc)
                    if isinstance(exc, LuxxonError):
                        logger.error("%r: %s", run, exc)
                    else:
                        logger.error("%r crashed", run, exc_info=exc)
                    outcome = Outcome.FAILED
                else:
                    self._crashes.pop(op.label, None)  # the retry went through
                if outcome is not Outcome.FAILED or self.should_exit.is_set():
                    return
                if await sleep_or_event(
                    self.clock, RESTART_BACKOFF.delay(attempt), self.should_exit
                ):
                    return
                attempt += 1
                fresh = await still_ours(context, op.label, run.session)
                if fresh is None:
                    return
                session = fresh
        finally:
            finished = self.runs.pop(op.label, None)
            if finished is not None:
                last = self._finished[op.label] = finished.snapshot()
                self._earned_before[op.label] = (
                    self._earned_before.get(op.label, 0) + last.earned_micro_usdc
                )
            if outcome.served:
                self._served[op.label] += 1
            assigned.link.release(op.label)

    # ---- watchdog and STATUS= --------------------------------------------------------------

    async def _tick_loop(self) -> None:
        interval = self.notifier.watchdog_interval
        tick = min(STATUS_TICK_S, interval) if interval else STATUS_TICK_S
        last_ping = self.clock.monotonic()
        while True:
            await self.clock.sleep(tick)
            self.notifier.status(self.status_line())
            now = self.clock.monotonic()
            if interval and now - last_ping >= interval * 0.9:
                problem = self.stalled()
                if problem is None:
                    self.notifier.watchdog()
                    last_ping = now
                else:
                    logger.warning("watchdog withheld: %s", problem)

    def stalled(self) -> str | None:
        """Why the process itself is stuck (so no WATCHDOG=1), or None.

        An unreachable API is not a stall: a restart would not bring it back,
        and the agent goes on sampling into the spool and reconnecting the
        video meanwhile. Only local work counts: the sampler ticking, the spool
        taking its writes, a publishing video's frames advancing (a video that
        is connecting or reconnecting is waiting on the network, not stuck).
        The event loop itself is covered by this check running at all.
        """
        if not self.runs:
            return None
        from luxxon_agent.video import PublisherState

        now = self.clock.monotonic()
        limit = self.config.agent.stall_seconds
        for label, run in list(self.runs.items()):
            video = self._progress.setdefault(f"{label}.video", _Progress(moved_at=now))
            frames = run.frames_sent()
            if run.video_state is not PublisherState.PUBLISHING or frames is None:
                video.moved_at = now  # nothing that should move right now
            else:
                video.update(frames, now)
                if video.moved_at is not None and now - video.moved_at > limit:
                    return f"{label}: no video frames sent for {now - video.moved_at:.0f} s"
            tick = run.last_sampler_tick
            if tick is not None and now - tick > limit:
                return f"{label}: telemetry loop silent for {now - tick:.0f} s"
            written = run.last_spool_write
            if tick is not None and written is not None and now - written > limit:
                return f"{label}: the spool refused writes for {now - written:.0f} s"
        return None

    # ---- close ----------------------------------------------------------------------------

    async def _close(self) -> None:
        """Close everything opened; each part is closed even when another fails to."""
        async with contextlib.AsyncExitStack() as stack:  # unwinds last-in first
            stack.callback(self.notifier.close)
            for spool in self._spools.values():
                stack.callback(spool.close)
            for client in self._clients:
                stack.push_async_callback(client.aclose)
            if self.status_server is not None:
                stack.push_async_callback(self.status_server.stop)


class StartupError(LuxxonError):
    """The agent could not start (state directory, status port, keys)."""

    exit_code = EXIT_STARTUP_FAILURE


def shutdown_budget_seconds(config: AgentConfig) -> float:
    """How long a SIGTERM may take: `shutdown_timeout_seconds`, plus the drain and /end
    of sessions that end on SIGTERM. The unit's TimeoutStopSec must exceed it."""
    ends = any(config.on_sigterm_for(op) is OnSigterm.END for op in config.operators)
    extra = SHUTDOWN_DRAIN_MAX_S + END_BUDGET_S if ends else 0.0
    return config.agent.shutdown_timeout_seconds + extra


async def _wait_for(tasks: set[asyncio.Task[None]], timeout: float) -> set[asyncio.Task[None]]:
    """The tasks still pending after `timeout` seconds."""
    if not tasks:
        return set()
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    return pending


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or `exc` itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
