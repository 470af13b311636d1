"""The Korean catalogue (해요체, the polite style of Korean apps): the names of ``bot.texts.english``,
by area in modules of the same names."""

from .answers import *  # noqa: F403
from .files import *  # noqa: F403
from .formats import *  # noqa: F403
from .general import *  # noqa: F403
from .lists import *  # noqa: F403
from .pipeline_errors import *  # noqa: F403
from .pipeline_words import *  # noqa: F403
from .predicting import *  # noqa: F403
from .reports import *  # noqa: F403
from .results import *  # noqa: F403
from .training import *  # noqa: F403
