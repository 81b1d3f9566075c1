"""Run every chaos scenario, print one line of figures each, and end with `chaos: N/M held`.
Exit status is non-zero when any scenario does not hold."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .scenarios import l1_limits_across_workers, r1_worker_kills, r2_redis_outage, r3_erp_faults

ROOT = Path(__file__).resolve().parent.parent
PYTEST_SCENARIOS = {
    "R4": ["tests/test_fuzz.py"],
    "S1": ["tests/test_security.py::test_s1_every_route_answers_only_the_allowed_roles"],
    "S2": ["tests/test_security.py::test_s2_canary_credential_never_leaks"],
    "S3": ["tests/test_security.py::test_s3_every_post_without_csrf_is_refused",
           "tests/test_security.py::test_s3_login_is_throttled_and_cookies_are_hardened"],
}


def pytest_scenario(name: str, targets: list[str], quick: bool) -> tuple[bool, dict]:
    report = Path(tempfile.mkstemp(prefix=f"chaos-{name}-", suffix=".jsonl")[1])
    env = dict(os.environ, CHAOS_REPORT=str(report), FUZZ_EXAMPLES="100" if quick else "500",
               TEST_REDIS_URL=os.environ.get("CHAOS_TEST_REDIS_URL", "redis://127.0.0.1:6379/14"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *targets], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    figures = {}
    for line in report.read_text().splitlines():
        row = json.loads(line)
        figures[row.pop("scenario")] = row
    report.unlink()
    if proc.returncode != 0:
        figures["pytest"] = proc.stdout.strip().splitlines()[-1:] + proc.stderr.strip().splitlines()[-3:]
    return proc.returncode == 0, figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller loads and a shorter outage (CI)")
    parser.add_argument("--only", nargs="*", help="scenario names, e.g. R1 S2")
    args = parser.parse_args(argv)
    scenarios = [("R1", lambda: r1_worker_kills(args.quick)), ("R2", lambda: r2_redis_outage(args.quick)),
                 ("R3", lambda: r3_erp_faults(args.quick)), ("L1", lambda: l1_limits_across_workers(args.quick))]
    scenarios += [(name, (lambda n=name, t=targets: pytest_scenario(n, t, args.quick)))
                  for name, targets in PYTEST_SCENARIOS.items()]
    if args.only:
        scenarios = [s for s in scenarios if s[0] in args.only]
    held_count = 0
    for name, scenario in scenarios:
        started = time.monotonic()
        try:
            held, figures = scenario()
        except Exception as exc:  # a scenario that crashes did not hold; say why and go on
            held, figures = False, {"error": f"{type(exc).__name__}: {exc}"}
        held_count += held
        print(f"{name} {'held' if held else 'BROKE'} {time.monotonic() - started:.0f}s {json.dumps(figures)}",
              flush=True)
    print(f"chaos: {held_count}/{len(scenarios)} held", flush=True)
    return 0 if held_count == len(scenarios) else 1


if __name__ == "__main__":
    sys.exit(main())
