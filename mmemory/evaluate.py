"""`python -m mmemory.evaluate`: score seed-format `<reminder>` predictions against VisDial (the command the seeds'
users know). The evaluator lives in `mmemory.reminder.evaluate`; this module is its entry point."""
import sys

from mmemory.reminder.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
