"""``python -m webinar_proxy`` runs the ``webinar-proxy`` command."""

import sys

from webinar_proxy.cli import main

sys.exit(main())
