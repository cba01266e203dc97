"""How ``ptsel.build`` shows its progress by default (``progress=None`` or ``True``): a tqdm bar
per stage where tqdm is installed (``tqdm.auto``: a widget in notebooks, a bar in terminals),
else one line rewritten in place when stderr is a terminal, else nothing (a log file gets no
stream of raw lines). ``pip install "ptsel[progress]"`` installs tqdm."""

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


class _Line:
    """A ``(stage, done, total)`` callback rewriting one line of ``stream`` per stage, as the
    CLI's bar looks: ``    vectors [=====>      ] 1200/3000``."""

    WIDTH = 30

    def __init__(self, stream):
        self.stream, self.stage = stream, None

    def __call__(self, stage, done, total):
        ends = "\n" if self.stage not in (None, stage) else ""
        self.stage = stage
        full = self.WIDTH * done // total if total else self.WIDTH
        bar = ("=" * full + (">" if full < self.WIDTH else "")).ljust(self.WIDTH)
        self.stream.write(f"{ends}\r{stage:>10} [{bar}] {done}/{total}")
        self.stream.flush()

    def close(self):
        if self.stage is not None:
            self.stream.write("\n")
            self.stream.flush()


def reporter():
    """The default display of a build's progress, a ``(stage, done, total)`` callable with a
    ``close()``; None where nobody watches."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        stream = sys.stderr
        isatty = getattr(stream, "isatty", None)
        return _Line(stream) if isatty is not None and isatty() else None
    return _Bars(tqdm)
