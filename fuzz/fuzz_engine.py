"""Fuzz the invitation engine (classify -> rewrite -> remove_conference -> next_occurrence).

Seeded with the project's invitation corpus (``tests/fixtures/clients``, the mbox split
into its messages); ``--corpus DIR`` seeds from another directory instead.  Every
input goes through ``fuzz.target.check``, which raises on a broken promise (see that
module); a finding is saved under ``--artifacts`` and the run goes
on, so one run reports every distinct crash it met.

Engines:

* ``atheris`` (default when installed): coverage-guided libFuzzer over the
  instrumented ``webinar_proxy``, ``icalendar`` and ``recurring_ical_events`` code, with a
  custom mutator that mixes the structured mutations of ``fuzz.mutate`` (3 in 4) with
  libFuzzer's byte-level ones;
* ``random``: the structured mutations alone, applied to random corpus seeds.

    .venv/bin/python fuzz/fuzz_engine.py --seconds 600
    .venv/bin/python fuzz/fuzz_engine.py --engine random --seconds 60
    nice -n 10 .venv/bin/python fuzz/fuzz_engine.py --engine random --seed 1 --jobs 2 --seconds 600

Prints the executions run and the distinct crashes found; exits 1 if any were found.
SIGTERM ends a run early with its report.
``--jobs N`` runs N processes on the seeds seed .. seed+N-1 (artifacts under
``ARTIFACTS/seed-K``) and prints their total.
An input that runs longer than ``--input-timeout`` seconds counts as a hang.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fuzz.mutate import load_seeds, mutate  # noqa: E402

DEFAULT_CORPUS = REPO / "tests" / "fixtures" / "clients"


class Hang(BaseException):
    pass


def _on_alarm(signum, frame):
    raise Hang()


class Run:
    def __init__(self, args: argparse.Namespace, check, violation_type) -> None:
        self.args = args
        self.check = check
        self.violation_type = violation_type
        self.began = time.monotonic()
        self.executions = 0
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.findings: dict[str, dict] = {}
        self.artifacts = Path(args.artifacts)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.stopped = False
        signal.signal(signal.SIGALRM, _on_alarm)
        # SIGTERM ends the run early, with its report.
        signal.signal(signal.SIGTERM, lambda signum, frame: setattr(self, "stopped", True))

    def one(self, data: bytes) -> None:
        self.executions += 1
        signal.setitimer(signal.ITIMER_REAL, self.args.input_timeout)
        try:
            self.outcomes[self.check(data, time_limit=self.args.slow_limit)] += 1
        except Hang:
            self.record("hang", f"more than {self.args.input_timeout:g} s", data, None)
        except self.violation_type as exc:
            self.record(exc.kind, str(exc), data, exc.__cause__)
        except Exception as exc:  # the check itself must not break; count it as a crash too
            self.record("check-raised", f"{type(exc).__name__}: {exc}", data, exc)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def record(self, kind: str, message: str, data: bytes, cause: BaseException | None) -> None:
        where = ""
        if cause is not None:
            every = traceback.extract_tb(cause.__traceback__)
            frames = [f for f in every if "webinar_proxy" in f.filename] or every
            if frames:
                last = frames[-1]
                where = f" at {Path(last.filename).name}:{last.lineno}"
        detail = type(cause).__name__ if cause else ""
        if kind == "classify-internal-error":  # "internal error: ValueError: ..." -> ValueError
            detail = message.split(": ")[2] if message.count(": ") >= 2 else ""
        signature = f"{kind}{where} {detail}".strip()
        self.outcomes["violation"] += 1
        if signature in self.findings:
            self.findings[signature]["count"] += 1
            return
        digest = hashlib.sha1(data).hexdigest()[:12]
        path = self.artifacts / f"{kind}-{digest}.bin"
        path.write_bytes(data)
        self.findings[signature] = {"count": 1, "message": message[:300], "input": str(path)}
        print(f"#{self.executions} NEW FINDING {signature}: {message[:200]} -> {path}", flush=True)

    def over(self) -> bool:
        return self.stopped or time.monotonic() - self.began >= self.args.seconds

    def report(self) -> int:
        spent = time.monotonic() - self.began
        print(f"\nengine: {self.args.engine}, {spent:.0f} s, executions: {self.executions} "
              f"({self.executions / max(spent, 1e-9):.1f}/s)")
        print("outcomes: " + ", ".join(f"{name} {count}" for name, count in sorted(self.outcomes.items())))
        print(f"crashes found (distinct): {len(self.findings)}")
        for signature, finding in self.findings.items():
            print(f"  {signature} x{finding['count']}: {finding['message'][:160]}")
            print(f"    input: {finding['input']}")
        sys.stdout.flush()
        if self.args.summary:
            Path(self.args.summary).write_text(json.dumps(
                {"executions": self.executions, "seconds": spent, "findings": self.findings}))
        return 1 if self.findings else 0


def run_random(args: argparse.Namespace, seeds: list[bytes]) -> int:
    from fuzz.target import Violation, check

    run = Run(args, check, Violation)
    rng = random.Random(args.seed)
    for seed in seeds:  # the unmutated corpus first
        run.one(seed)
    while not run.over():
        run.one(mutate(rng.choice(seeds), rng))
    return run.report()


def run_atheris(args: argparse.Namespace, seeds: list[bytes]) -> int:
    import atheris

    with atheris.instrument_imports(include=["webinar_proxy", "icalendar", "recurring_ical_events"]):
        from fuzz.target import Violation, check

    run = Run(args, check, Violation)
    seed_dir = Path(tempfile.mkdtemp(prefix="fuzz-seeds-"))
    for index, seed in enumerate(seeds):
        (seed_dir / f"seed-{index:03d}").write_bytes(seed)

    def test_one_input(data: bytes) -> None:
        run.one(data)
        if run.over():
            code = run.report()
            os._exit(code)

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.25:
            return atheris.Mutate(data, max_size)
        if not data or rng.random() < 0.1:
            data = rng.choice(seeds)
        return mutate(data, rng, max_size=max_size)

    atheris.Setup(
        [sys.argv[0], str(seed_dir), f"-max_len={4 * 1024 * 1024}", "-timeout=0", "-rss_limit_mb=4096",
         f"-seed={args.seed}", "-print_final_stats=0", "-print_pcs=0", "-report_slow_units=120",
         f"-artifact_prefix={run.artifacts}/"],
        test_one_input, custom_mutator=custom_mutator,
    )
    atheris.Fuzz()
    return run.report()  # pragma: no cover - libFuzzer exits before


def run_jobs(args: argparse.Namespace) -> int:
    """Run ``args.jobs`` fuzzers side by side, one seed each; print their total."""
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-jobs-"))
    children = []
    for offset in range(args.jobs):
        seed = args.seed + offset
        summary = workdir / f"seed-{seed}.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--engine", args.engine,
                   "--seed", str(seed), "--seconds", str(args.seconds), "--corpus", str(args.corpus),
                   "--artifacts", str(Path(args.artifacts) / f"seed-{seed}"),
                   "--input-timeout", str(args.input_timeout), "--slow-limit", str(args.slow_limit),
                   "--summary", str(summary)]
        children.append((seed, summary, subprocess.Popen(command)))

    def stop(signum, frame) -> None:  # pass SIGTERM on, then add up what the jobs report
        for _, _, child in children:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    executions = 0
    findings: dict[str, dict] = {}
    for seed, summary, child in children:
        child.wait()
        if not summary.exists():
            print(f"job with seed {seed} ended without a summary (exit {child.returncode})")
            findings[f"job-{seed}-died"] = {"count": 1, "message": f"exit {child.returncode}", "input": ""}
            continue
        result = json.loads(summary.read_text())
        executions += result["executions"]
        for signature, finding in result["findings"].items():
            if signature in findings:
                findings[signature]["count"] += finding["count"]
            else:
                findings[signature] = finding
    spent = time.monotonic() - began
    print(f"\nengine: {args.engine}, jobs: {args.jobs} (seeds {args.seed}..{args.seed + args.jobs - 1}), "
          f"{spent:.0f} s, executions: {executions}")
    print(f"crashes found (distinct): {len(findings)}")
    for signature, finding in findings.items():
        print(f"  {signature} x{finding['count']}: {finding['message'][:160]}")
        print(f"    input: {finding['input']}")
    return 1 if findings else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    try:
        import atheris  # noqa: F401

        default_engine = "atheris"
    except ImportError:
        default_engine = "random"
    parser.add_argument("--engine", choices=("atheris", "random"), default=default_engine)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--artifacts", default=str(Path(tempfile.gettempdir()) / "webinar-proxy-fuzz"),
                        help="where inputs of findings are written")
    parser.add_argument("--input-timeout", type=float, default=30.0,
                        help="an input running longer is a hang")
    parser.add_argument("--slow-limit", type=float, default=10.0,
                        help="classify/rewrite/next_occurrence slower than this is a finding")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1,
                        help="run this many processes, on seeds seed .. seed+jobs-1, and add up")
    parser.add_argument("--summary", help=argparse.SUPPRESS)  # a job's result, for --jobs
    args = parser.parse_args()
    if args.jobs > 1:
        return run_jobs(args)
    if not args.corpus.is_dir():
        parser.error(f"corpus not found: {args.corpus}")
    seeds = load_seeds(args.corpus)
    print(f"{len(seeds)} seeds from {args.corpus}; engine {args.engine}; {args.seconds:g} s", flush=True)
    if args.engine == "atheris":
        return run_atheris(args, seeds)
    return run_random(args, seeds)


if __name__ == "__main__":
    sys.exit(main())
