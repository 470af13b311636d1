"""The English catalogue: every area's names in one namespace (the modules only keep each area's sentences together)."""

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
