"""/predict with warm models: one long-lived process per recently used model archive, and the photos'
threshold buttons.

Starting TensorFlow and loading a SavedModel takes seconds, a photo through a loaded model a fraction of
one. So a worker (``pipeline.export.predict_server``) loads an archive once and answers one photo at a
time over a pipe. The bot never imports TensorFlow: it spawns the worker (a fresh interpreter, as
``bot/checker.py`` does, dying with the bot through PR_SET_PDEATHSIG, on the devices ``tool_env``
chose when it started) and waits on the pipe from the event loop. A worker unused for ``idle_s`` is
stopped; at most ``models`` live at once, the least recently used going first. A worker that dies or
takes longer than ``timeout_s`` over a photo is killed, that photo gets a sentence, never a hang, and
the next photo starts a new one.

Each answered photo is kept (``Shot``: its file and every detection down to the lowest threshold), the
latest ``KEPT_SHOTS`` of them, so its buttons redraw it at another threshold without the model.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import re
import secrets
import signal
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from pipeline.errors import UsageError
from pipeline.export.predict import DEFAULT_THRESHOLD, Detection, draw

from . import texts
from .checker import _die_with_parent
from .errors import Refused, cli_error_text
from .guide import model_job
from .training import TrainingService

log = logging.getLogger(__name__)

LOAD_TIMEOUT_S = 300.0  # importing TensorFlow and loading a SavedModel on a busy 2-core machine
LEVELS = (0.05, 0.15, DEFAULT_THRESHOLD, 0.5, 0.7)  # the score thresholds the buttons step through
DEFAULT_LEVEL = LEVELS.index(DEFAULT_THRESHOLD)
KEPT_SHOTS = 200
BUTTON = re.compile(r"([0-9a-f]{8}):([0-9])")  # "thr:" + this: a shot's token and a level
BUTTON_KIND = "thr"


@dataclass(eq=False)
class _Worker:
    archive: str
    process: multiprocessing.process.BaseProcess
    conn: Connection
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ready: bool = False
    stopped: bool = False
    idle: asyncio.TimerHandle | None = None


def _serve(conn: Connection, parent_pid: int, env: dict[str, str] | None, archive: str) -> None:
    """The worker process: its environment (the devices) set before TensorFlow reads it, then the loop."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the bot decides
    if env is not None:
        os.environ.update(env)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s predict worker: %(message)s")
    from pipeline.export.predict_server import serve

    serve(Path(archive), conn.recv, conn.send)


class WarmPredictors:
    """The workers, by archive; every method runs on the event loop (the thread their death signal watches)."""

    def __init__(self, idle_s: float, models: int, timeout_s: float):
        self.idle_s, self.models, self.timeout_s = idle_s, models, timeout_s
        self._workers: OrderedDict[str, _Worker] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.models > 0

    async def predict(self, archive: Path, request: dict, env: dict[str, str] | None) -> dict:
        """The worker's answer to ``request`` (see ``pipeline.export.predict_server``); a worker that
        failed to load answers ``{"error"}``. Refused when the worker died or hung over it."""
        while True:
            worker = self._worker(str(archive), env)
            async with worker.lock:
                if worker.stopped:  # evicted or expired while this request waited for it
                    continue
                if worker.idle:
                    worker.idle.cancel()
                try:
                    return await self._ask(worker, request)
                finally:
                    self._settle(worker)

    def close(self) -> None:
        """At the bot's shutdown: every worker killed and reaped."""
        for worker in list(self._workers.values()):
            self._stop(worker)
            asyncio.get_running_loop().remove_reader(worker.process.sentinel)
            worker.process.join(5)

    def _worker(self, key: str, env: dict[str, str] | None) -> _Worker:
        worker = self._workers.get(key)
        if worker is None:
            worker = self._workers[key] = self._start(key, env)
        self._workers.move_to_end(key)
        self._trim()
        return worker

    def _start(self, key: str, env: dict[str, str] | None) -> _Worker:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=_serve, args=(theirs, os.getpid(), env, key), daemon=True)
        process.start()
        theirs.close()
        worker = _Worker(key, process, ours)
        asyncio.get_running_loop().add_reader(process.sentinel, self._exited, worker)
        log.info("predict worker %s started for %s", process.pid, Path(key).name)
        return worker

    async def _ask(self, worker: _Worker, request: dict) -> dict:
        try:
            failed = None if worker.ready else await self._load(worker)
            if failed:
                return failed
            worker.conn.send(request)
            answer = await self._receive(worker, self.timeout_s)
        except TimeoutError:
            log.warning("predict worker %s took too long: killing it", worker.process.pid)
            self._stop(worker)
            raise Refused(texts.predict_timed_out(self.timeout_s if worker.ready else LOAD_TIMEOUT_S)) from None
        except (EOFError, OSError) as error:
            log.warning("predict worker %s is gone (%s)", worker.process.pid, type(error).__name__)
            self._stop(worker)
            raise Refused(texts.PREDICT_CRASHED) from None
        if "crash" in answer:
            log.error("predict worker %s failed on a photo:\n%s", worker.process.pid, answer["crash"])
            raise Refused(texts.PREDICT_CRASHED)
        return answer

    async def _load(self, worker: _Worker) -> dict | None:
        """Waits for the model to load; None once it has, else the error the worker sent instead."""
        loaded = await self._receive(worker, LOAD_TIMEOUT_S)
        if "ready" not in loaded:
            self._stop(worker)
            return loaded
        worker.ready = True
        seconds = loaded["ready"]["seconds"]
        log.info("predict worker %s ready for %s in %.1f s", worker.process.pid, worker.archive, seconds)
        return None

    @staticmethod
    async def _receive(worker: _Worker, timeout: float) -> dict:
        """The worker's next message; EOFError once it died. A message is a few kB, sent whole."""
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        fd = worker.conn.fileno()
        loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
        try:
            await asyncio.wait_for(readable, timeout)
        finally:
            loop.remove_reader(fd)
        return worker.conn.recv()

    def _settle(self, worker: _Worker) -> None:
        if not worker.stopped:
            worker.idle = asyncio.get_running_loop().call_later(self.idle_s, self._expire, worker)
        self._trim()

    def _expire(self, worker: _Worker) -> None:
        if not worker.stopped and not worker.lock.locked():
            log.info("predict worker %s was idle for %g s: stopping it", worker.process.pid, self.idle_s)
            self._stop(worker)

    def _trim(self) -> None:
        """The least recently used idle workers go while more than ``models`` live."""
        extra = len(self._workers) - self.models
        for worker in [w for w in list(self._workers.values())[:extra] if not w.lock.locked()]:
            log.info("predict worker %s makes room for a newer model", worker.process.pid)
            self._stop(worker)

    def _stop(self, worker: _Worker) -> None:
        if self._workers.get(worker.archive) is worker:
            del self._workers[worker.archive]
        if worker.idle:
            worker.idle.cancel()
        worker.stopped = True
        worker.process.kill()  # nothing to save: the model is on disk
        worker.conn.close()

    def _exited(self, worker: _Worker) -> None:
        """Its process ended (stopped here, killed from outside, crashed): reap it, and forget it."""
        asyncio.get_running_loop().remove_reader(worker.process.sentinel)
        worker.process.join()
        log.info("predict worker %s exited with %s", worker.process.pid, worker.process.exitcode)
        if not worker.stopped and not worker.lock.locked():  # a request in flight finds out by itself
            self._stop(worker)


@dataclass(frozen=True)
class Shot:
    """A photo the model has seen, as its threshold buttons need it."""

    token: str  # names it in the buttons' data
    user_id: int  # who sent it: the only one whose buttons work
    image: Path
    detections: tuple[dict, ...]  # every detection scoring LEVELS[0] or more, best first (``Detection.to_json``)
    level: int  # the index in LEVELS it is drawn at

    @property
    def threshold(self) -> float:
        return LEVELS[self.level]

    @property
    def shown(self) -> list[dict]:
        return [found for found in self.detections if found["score"] >= self.threshold]

    @property
    def drawn(self) -> Path:
        return self.image.with_suffix(".out.png")


class Predictions:
    """Photos for a finished job's model: the detections and the drawing, and redrawings at other thresholds."""

    def __init__(self, training: TrainingService, pool: WarmPredictors):
        self.training, self.pool = training, pool
        self._shots: OrderedDict[str, Shot] = OrderedDict()

    async def photo(
        self, user_id: int, job_id: str | None, name: str, save: Callable[[Path], Awaitable[object]]
    ) -> tuple[bytes, Shot]:
        """Run the model of the named finished job (else the newest) on a photo ``save`` writes."""
        job = model_job(self.training.store, user_id, job_id)
        archive = await self.training.archive(job)
        token = secrets.token_hex(4)  # in the file name too: message ids repeat across chats
        image = self.training.settings.user_dir(user_id) / "predict" / f"{name}-{token}.jpg"
        await asyncio.to_thread(image.parent.mkdir, parents=True, exist_ok=True)
        await save(image)
        shot = Shot(token, user_id, image, (), DEFAULT_LEVEL)
        shot = replace(shot, detections=tuple(await self._detect(archive, shot, job)))
        self._shots[shot.token] = shot
        while len(self._shots) > KEPT_SHOTS:
            self._shots.popitem(last=False)
        return await asyncio.to_thread(shot.drawn.read_bytes), shot

    async def _detect(self, archive: Path, shot: Shot, job) -> list[dict]:
        if not self.pool.enabled:  # DETBOT_PREDICT_MODELS=0: a TensorFlow process per photo, as before
            found = await self.training.predict(archive, shot.image, shot.drawn, job=job, threshold=LEVELS[0])
            await asyncio.to_thread(_draw, shot, found)
            return found
        request = {"image": str(shot.image), "out": str(shot.drawn), "threshold": shot.threshold, "floor": LEVELS[0]}
        answer = await self.pool.predict(archive, request, self.training.tool_env("predict", job))
        if "error" in answer:
            raise Refused(cli_error_text(answer["error"], (self.training.settings.token,)))
        return answer["detections"]

    async def redraw(self, user_id: int, data: str) -> tuple[bytes, Shot] | None:
        """The photo a threshold button (``data``: after "thr:") names, drawn at its level; None when it
        is drawn so already (a second tap)."""
        button = BUTTON.fullmatch(data)
        shot = self._shots.get(button[1]) if button and int(button[2]) < len(LEVELS) else None
        if shot is None:
            raise Refused(texts.PHOTO_FORGOTTEN)
        if shot.user_id != user_id:
            raise Refused(texts.NOT_YOUR_PHOTO)
        if int(button[2]) == shot.level:
            return None
        shot = self._shots[shot.token] = replace(shot, level=int(button[2]))
        try:
            await asyncio.to_thread(_draw, shot, shot.detections)
        except UsageError:  # its photo was deleted (/jobs: delete predictions)
            del self._shots[shot.token]
            raise Refused(texts.PHOTO_FORGOTTEN) from None
        return await asyncio.to_thread(shot.drawn.read_bytes), shot


def _draw(shot: Shot, found) -> None:
    draw(shot.image, [Detection.from_json(d) for d in found if d["score"] >= shot.threshold], shot.drawn)


def threshold_buttons(shot: Shot) -> InlineKeyboardMarkup:
    """A lower and a higher threshold, as far as LEVELS go."""
    buttons = [
        InlineKeyboardButton(label(LEVELS[level]), callback_data=f"{BUTTON_KIND}:{shot.token}:{level}")
        for label, level in ((texts.lower_threshold, shot.level - 1), (texts.higher_threshold, shot.level + 1))
        if 0 <= level < len(LEVELS)
    ]
    return InlineKeyboardMarkup([buttons])
