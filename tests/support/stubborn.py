"""A process that ignores SIGTERM (``python -m tests.support.stubborn``): only SIGKILL stops it."""

import signal
import time

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ignoring SIGTERM", flush=True)
    time.sleep(600)
