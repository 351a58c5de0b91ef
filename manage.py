#!/usr/bin/env python
"""One entry point for every service.

Choose the service with ``--settings=<service>.settings`` or ``SERVICE=<service>``:

    ./manage.py migrate --settings=account.settings
    SERVICE=order ./manage.py shell
"""

import os
import sys


def main() -> None:
    service = os.environ.get("SERVICE")
    if service and "DJANGO_SETTINGS_MODULE" not in os.environ:
        os.environ["DJANGO_SETTINGS_MODULE"] = f"{service}.settings"
    has_settings = "DJANGO_SETTINGS_MODULE" in os.environ or any(
        arg.startswith("--settings") for arg in sys.argv
    )
    if (
        not has_settings
        and len(sys.argv) > 1
        and sys.argv[1] not in {"help", "--help", "-h", "version", "--version"}
    ):
        sys.exit(
            "manage.py: choose a service with --settings=<service>.settings or SERVICE=<service> "
            "(customer, account, order, orchestrator)"
        )
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
