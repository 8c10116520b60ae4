"""Cold start of the `luxxon` CLI: wall time of fresh processes, and what they import.

    python benchmarks/bench_cli_startup.py [--runs 15]

Measures `luxxon --help` (target: under about 0.3 s) and `luxxon sessions
cancel-all` up to the point where it needs the network (no API key given, so
it stops after loading the HTTP client stack and resolving the key), each in
a new interpreter like a shell would start it. Prints min / median / max and
checks that neither imported aiortc, av, web3 or eth_account (exit 1 if one did).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HEAVY = ("aiortc", "av", "web3", "eth_account")
TARGET_HELP_SECONDS = 0.3

PROBE = """
import sys
sys.argv = ["luxxon", *sys.argv[1:]]
from luxxon_agent.cli.luxxon import main
try:
    main()
except SystemExit:
    pass
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY_NAMES))
sys.stderr.write("HEAVY=" + ",".join(heavy) + "\\n")
""".replace("HEAVY_NAMES", repr(HEAVY))


def run_once(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "from luxxon_agent.cli.luxxon import main; main()", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return time.perf_counter() - start


def heavy_imports(args: list[str], env: dict[str, str]) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, check=False
    )
    for line in result.stderr.splitlines():
        if line.startswith("HEAVY="):
            return [name for name in line.removeprefix("HEAVY=").split(",") if name]
    raise RuntimeError(f"probe failed: {result.stderr.strip()[-300:]}")


def baseline(env: dict[str, str], runs: int) -> float:
    """The bare interpreter start on this machine, for scale."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=env, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "HOME": home,
            "XDG_CONFIG_HOME": os.path.join(home, "config"),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        }
        for name in ("LUXXON_API_KEY", "CREDENTIALS_DIRECTORY"):
            env.pop(name, None)
        print(f"python -c pass (median of {options.runs}): {baseline(env, options.runs):.3f} s")
        ok = True
        for label, args in (
            ("luxxon --help", ["--help"]),
            ("luxxon sessions cancel-all (to key lookup)", ["sessions", "cancel-all"]),
        ):
            run_once(args, env)  # warm the OS file cache; we measure interpreter cold start
            times = sorted(run_once(args, env) for _ in range(options.runs))
            heavy = heavy_imports(args, env)
            print(
                f"{label}: min {times[0]:.3f} s, median {statistics.median(times):.3f} s, "
                f"max {times[-1]:.3f} s; heavy imports: {', '.join(heavy) or 'none'}"
            )
            ok = ok and not heavy
            if args == ["--help"] and times[0] > TARGET_HELP_SECONDS:
                # a figure, not a failure: a loaded machine slows every process alike
                print(f"  over the {TARGET_HELP_SECONDS} s target (compare with python -c pass)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
