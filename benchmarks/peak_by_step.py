"""Where the main process's memory peaks: the resident size (RSS) before, at most during,
and after each step of a run, sampled every 20 ms.

    python benchmarks/peak_by_step.py score /tmp/big100m --top 0 --out /tmp/a.parquet

Arguments are `detector`'s. Steps run in threads other than the main one are not
followed; worker processes are not counted (`bench_engine.py` sums the whole tree).
"""

import functools
import sys
import threading
import time

T0 = time.perf_counter()


def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024


state = {"peak": 0, "stack": []}
records = []


def sampler():
    while True:
        m = rss()
        state["peak"] = max(state["peak"], m)
        for frame in state["stack"]:
            frame[2] = max(frame[2], m)
        time.sleep(0.02)


def wrap(mod, name):
    f = getattr(mod, name)

    @functools.wraps(f)
    def inner(*a, **k):
        if threading.current_thread() is not threading.main_thread():
            return f(*a, **k)
        frame = [name, time.perf_counter() - T0, rss(), rss()]
        state["stack"].append(frame)
        try:
            return f(*a, **k)
        finally:
            state["stack"].remove(frame)
            records.append(
                (frame[0], frame[1], time.perf_counter() - T0, frame[3], frame[2], rss())
            )

    setattr(mod, name, inner)


if __name__ == "__main__":
    import detector.engine.local as L
    import detector.features.derive as D
    import detector.features.table as T
    import detector.pipeline as P

    for n in [
        "_volume_baselines",
        "_add_baselines",
        "_add_accumulation",
        "_frame",
        "_novelty",
        "_some_novelty",
        "_rare",
        "_rare_hours",
        "_stored_hours",
        "_account_attribute",
        "_calendar",
        "_judged",
        "_gather",
        "_compact_columns",
    ]:
        if hasattr(T, n):
            wrap(T, n)
    for n in ["derive", "window_features"]:
        if hasattr(D, n):
            wrap(D, n)
        if hasattr(T, n):
            wrap(T, n)
    for n in ["assemble", "attach", "run_kernel"]:
        if hasattr(L, n):
            wrap(L, n)
    for n in ["detect", "_candidates", "_keep_candidates"]:
        wrap(P, n)
    threading.Thread(target=sampler, daemon=True).start()
    from detector.cli import main

    sys.argv = ["detector", *sys.argv[1:]]
    try:
        main()
    except SystemExit:
        pass
    print("peak", state["peak"], file=sys.stderr)
    for r in sorted(records, key=lambda r: r[1]):
        print(
            f"{r[0]:22s} {r[1]:7.1f}-{r[2]:7.1f}  in {r[3]:6d} max {r[4]:6d} out {r[5]:6d} MB",
            file=sys.stderr,
        )
