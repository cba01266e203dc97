"""How ``ptsel.build(progress=True)`` shows its progress: a tqdm bar per stage where tqdm is
installed (``tqdm.auto``: a widget in notebooks, a bar in terminals), else one line rewritten in
place when stderr is a terminal, else nothing (a log file or a notebook without tqdm gets no
stream of raw lines)."""

import sys


class _Bars:
    """A ``(stage, done, total)`` callback drawing one tqdm bar per stage."""

    def __init__(self, tqdm):
        self.tqdm, self.stage, self.bar = tqdm, None, None

    def __call__(self, stage, done, total):
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = self.tqdm(total=total, desc=stage, leave=True, dynamic_ncols=True)
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def reporter(progress):
    """What the extension's ``progress`` argument should be for the user's ``progress``: a
    callable as given, False for False, and for True a tqdm callback, True (the extension's
    line on a terminal's stderr) or False."""
    if progress is not True:
        return progress
    try:
        from tqdm.auto import tqdm
    except ImportError:
        isatty = getattr(sys.stderr, "isatty", None)
        return bool(isatty and isatty())
    return _Bars(tqdm)
