"""The no-op job function plain RQ runs in the dispatch benchmark (the farm runs demo duration=0)."""


def noop(**kwargs: object) -> None:
    return None
