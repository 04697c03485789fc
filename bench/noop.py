"""The no-op job function plain RQ runs in the dispatch benchmark (the farm runs demo duration=0)."""


def noop(**kwargs: object) -> None:
    return None


def sleep(seconds: float = 0.0, **kwargs: object) -> None:
    """The plain-RQ twin of a demo render of ``seconds``."""
    import time

    time.sleep(seconds)
