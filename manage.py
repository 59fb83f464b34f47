#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callbridge.settings")
    from callbridge.private_files import restrict_new_files

    restrict_new_files()  # everything callbridge writes is private (before the data dir exists)
    from callbridge.event_loop import use_configured_event_loop

    use_configured_event_loop()  # before Django loads daphne, which makes its loop at import
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
