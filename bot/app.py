"""The composition root: builds the Application, its services and its handlers."""

from __future__ import annotations

import asyncio
import logging

from telegram import BotCommand, Update
from telegram.error import TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from storage import StoreError, open_store

from . import handlers, send, texts
from .albums import Albums
from .cluster import Cluster
from .config import Settings
from .datasets import DatasetService
from .errors import STORE_FAULTS, user_text
from .monitor import watch
from .predictor import Predictions, WarmPredictors
from .training import TrainingService
from .users import Users

WATCH_INTERVAL_S = 2.0
MEDIA = filters.VOICE | filters.AUDIO | filters.VIDEO | filters.VIDEO_NOTE | filters.ANIMATION | filters.Sticker.ALL
log = logging.getLogger(__name__)


def build_application(settings: Settings) -> Application:
    builder = (
        Application.builder()
        .token(settings.token)
        .rate_limiter(AIORateLimiter(max_retries=3))
        .concurrent_updates(True)
        .post_init(_post_init)
        .post_shutdown(_post_shutdown)
    )
    if settings.base_url:
        builder = builder.base_url(settings.base_url)
    if settings.base_file_url:
        builder = builder.base_file_url(settings.base_file_url)
    app = builder.local_mode(settings.local_mode).build()
    app.bot_data["settings"] = settings
    app.bot_data["albums"] = Albums()
    app.add_handler(TypeHandler(Update, handlers.gate), group=-1)
    for name, callback in (
        ("start", handlers.start),
        ("help", handlers.start),
        ("split", handlers.split),
        ("labels", handlers.labels),
        ("model", handlers.model),
        ("train", handlers.train),
        ("status", handlers.status),
        ("stop", handlers.stop),
        ("resume", handlers.resume),
        ("jobs", handlers.jobs),
        ("export", handlers.export),
        ("predict", handlers.predict),
        ("dataset", handlers.dataset_url),
        ("datasets", handlers.datasets),
        ("cancel", handlers.cancel),
        ("settings", handlers.settings),
    ):
        app.add_handler(CommandHandler(name, callback))
    # Every message gets an answer: the first handler that matches takes it (a GIF is a document too).
    app.add_handler(MessageHandler(filters.COMMAND, handlers.unknown_command))
    app.add_handler(MessageHandler(filters.TEXT, handlers.free_text))
    app.add_handler(MessageHandler(MEDIA, handlers.media))
    app.add_handler(MessageHandler(filters.Document.ALL, handlers.document))
    app.add_handler(MessageHandler(filters.PHOTO, handlers.photo))
    app.add_handler(MessageHandler(filters.ALL, handlers.media))
    app.add_handler(CallbackQueryHandler(handlers.button))
    app.add_error_handler(on_error)
    return app


async def _post_init(app: Application) -> None:
    settings: Settings = app.bot_data["settings"]
    services = app.bot_data["services"] = await asyncio.to_thread(_services, settings)
    # On a cluster every photo is a one-off cluster job: no model is loaded on the bot host.
    warm = 0 if services.training.cluster else settings.predict_models
    pool = WarmPredictors(settings.predict_idle_s, warm, settings.predict_timeout_s)
    app.bot_data["predictions"] = Predictions(services.training, pool)  # loads models on demand
    await _set_commands(app)
    await _tell_interrupted(app, await asyncio.to_thread(services.datasets.recover_interrupted))
    await services.datasets.repair_interrupted_edits()
    app.job_queue.run_repeating(watch, interval=WATCH_INTERVAL_S, first=0.5, name="watch")


def _services(settings: Settings) -> handlers.Services:
    """Off the event loop: the store is opened and migrated, and the training service asks nvidia-smi (or
    the cluster's nodes) what a training gets, once, for every card after."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.db_path)
    cluster = Cluster(settings) if settings.on_cluster else None
    return handlers.Services(
        users=Users(store, settings.allowed_user_ids),
        datasets=DatasetService(store, settings),  # checks in a worker process, one at a time
        training=TrainingService(store, settings, cluster=cluster),
    )


async def _set_commands(app: Application) -> None:
    """The command menu in each language: English for every app language, Korean for Korean apps."""
    for language, catalogue in texts.CATALOGUES.items():
        commands = [BotCommand(name, about) for name, about in catalogue.COMMANDS]
        await app.bot.set_my_commands(commands, language_code=None if language == texts.DEFAULT else language)


async def _tell_interrupted(app: Application, datasets: list) -> None:
    """Checks a restart cut short: their datasets are failed; their owners hear it from us."""
    users = app.bot_data["services"].users
    for dataset in datasets:
        try:  # a user's private chat has the user's id
            with texts.speaking(await asyncio.to_thread(users.language, dataset.user_id)):
                text = texts.check_interrupted(dataset.id, dataset.name)
            await send.text((app.bot, dataset.user_id), text)
        except TelegramError as error:
            log.warning(
                "could not tell user %s that dataset %s was interrupted: %s", dataset.user_id, dataset.id, error
            )


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The one error handler: the user hears what they may know, the log what the operator must."""
    error = context.error
    text = user_text(error, (context.bot_data["settings"].token,))
    if text is None:
        log.error("unhandled error", exc_info=error)
        text = texts.APOLOGY
    elif isinstance(error, StoreError) and error.kind in STORE_FAULTS:
        log.error("the store failed (%s): %s", error.kind, error, exc_info=error)
    else:
        log.info("refused: %s", error)
    message = update.effective_message if isinstance(update, Update) else None
    if message:
        await send.text(message, text)


async def _post_shutdown(app: Application) -> None:
    services = app.bot_data.get("services")
    if services:
        services.datasets.close()  # the check worker is killed; its dataset is settled at the next start
        services.datasets.store.close()
    if "predictions" in app.bot_data:
        app.bot_data["predictions"].pool.close()  # the warm models are killed
