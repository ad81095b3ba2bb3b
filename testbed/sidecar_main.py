"""Runs the sidecar's command line inside a test container (``python sidecar_main.py run ...``)."""

import sys

if __name__ == "__main__":
    from sidecar.cli import main

    sys.exit(main())
