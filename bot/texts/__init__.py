"""What the bot says: every reply's wording, as plain text (no markup to escape), by area.

``from bot import texts`` gives every area's names, as one catalogue; the modules only keep
each area's sentences together.
"""

from .answers import *  # noqa: F403
from .files import *  # noqa: F403
from .general import *  # noqa: F403
from .reports import *  # noqa: F403
from .training import *  # noqa: F403
