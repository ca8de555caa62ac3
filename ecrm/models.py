"""One import that registers every table on `Base.metadata` (for Alembic and tests)."""

from __future__ import annotations


def load_all() -> None:
    from ecrm.api import models as _api  # noqa: F401
    from ecrm.campaigns import models as _campaigns  # noqa: F401
    from ecrm.deliveries import models as _deliveries  # noqa: F401
    from ecrm.feedback import models as _feedback  # noqa: F401
    from ecrm.orders import models as _orders  # noqa: F401
    from ecrm.profiles import models as _profiles  # noqa: F401
    from ecrm.push import models as _push  # noqa: F401
    from ecrm.segments import models as _segments  # noqa: F401
    from ecrm.shops import models as _shops  # noqa: F401
    from ecrm.site import models as _site  # noqa: F401
    from ecrm.transactional import models as _transactional  # noqa: F401
