"""Cold start of the `luxxon` CLI: wall time of fresh processes, and what they import.

    python benchmarks/bench_cli_startup.py [--runs 15]

Two figures, each over fresh interpreters started like a shell would:

- `luxxon --help` until the process exits (target: 0.3 s);
- `luxxon sessions cancel-all` until its HTTP request reaches the server
  (target: 0.5 s). The server is a loopback socket in this process that
  answers `{count: 0}`, so the command runs its whole real path: options,
  profile, the API key stored in the profile (its 0600 file, as on a box
  without a keyring), client, request.

Each is printed as min / median / max, against its target and as a multiple of
`python -c pass` (a loaded machine slows every process alike). Then the
cancel-all path's imports by top-level package (self time, from
`python -X importtime`), and whether aiortc, av, web3 or eth_account were
imported (exit 1 if one was: those must never load on these paths).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable

HEAVY = ("aiortc", "av", "web3", "eth_account")
TARGET_HELP_SECONDS = 0.3
TARGET_CALL_SECONDS = 0.5
ACCEPT_TIMEOUT_SECONDS = 30.0
PROFILE_RUNS = 3
ENTRY = "from luxxon_agent.cli.luxxon import main; main()"
CANCEL_ALL = ["sessions", "cancel-all"]
ANSWER_BODY = b'{"count": 0, "cancelled": []}'
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER_BODY), ANSWER_BODY)
)

STORE_KEY = """
from luxxon_agent.identity import ApiKeyStore, Profile
from luxxon_agent.secret import Secret
assert ApiKeyStore(Profile.open()).save(Secret("lxxn_test_benchmark_not_a_real_key")) == "file"
"""

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


class CannedServer:
    """A loopback listener: times the arrival of one request head, answers it, closes."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(ACCEPT_TIMEOUT_SECONDS)
        self.base_url = f"http://127.0.0.1:{self._socket.getsockname()[1]}/api/v1"

    def serve_one(self) -> tuple[float, bytes]:
        """Block until one request head arrives; its perf_counter time and request line."""
        connection, _ = self._socket.accept()
        with connection:
            connection.settimeout(ACCEPT_TIMEOUT_SECONDS)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = connection.recv(65536)
                if not chunk:
                    raise RuntimeError("the client closed before sending a request")
                head += chunk
            arrived = time.perf_counter()
            connection.sendall(ANSWER)
        return arrived, head.split(b"\r\n", 1)[0]

    def close(self) -> None:
        self._socket.close()


def command(args: list[str], *flags: str) -> list[str]:
    return [sys.executable, *flags, "-c", ENTRY, *args]


def time_exit(args: list[str], env: dict[str, str]) -> float:
    """Seconds from spawn to exit."""
    start = time.perf_counter()
    subprocess.run(
        command(args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
    )
    return time.perf_counter() - start


def time_request(server: CannedServer, env: dict[str, str]) -> float:
    """Seconds from spawn until cancel-all's request reaches `server`."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command(CANCEL_ALL), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        arrived, request_line = server.serve_one()
    except TimeoutError:
        process.kill()
        raise RuntimeError(f"no request: {process.communicate()[1].decode()[-300:]}") from None
    _, stderr = process.communicate(timeout=ACCEPT_TIMEOUT_SECONDS)
    if process.returncode != 0 or b"cancel-all-assignments" not in request_line:
        raise RuntimeError(f"cancel-all failed: {request_line!r} {stderr.decode()[-300:]}")
    return arrived - start


def heavy_imports(args: list[str], env: dict[str, str], serve: Callable[[], object]) -> list[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", PROBE, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    serve()
    _, stderr = process.communicate(timeout=ACCEPT_TIMEOUT_SECONDS)
    for line in stderr.splitlines():
        if line.startswith("HEAVY="):
            return [name for name in line.removeprefix("HEAVY=").split(",") if name]
    raise RuntimeError(f"probe failed: {stderr.strip()[-300:]}")


def import_profile(server: CannedServer, env: dict[str, str]) -> Counter[str]:
    """Self import time (s) of cancel-all's path per top-level package, least of a few runs."""
    runs = [_import_run(server, env) for _ in range(PROFILE_RUNS)]
    return Counter({name: min(run.get(name, 0.0) for run in runs) for name in runs[0]})


def _import_run(server: CannedServer, env: dict[str, str]) -> Counter[str]:
    process = subprocess.Popen(
        command(CANCEL_ALL, "-X", "importtime"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    server.serve_one()
    _, stderr = process.communicate(timeout=ACCEPT_TIMEOUT_SECONDS)
    totals: Counter[str] = Counter()
    for line in stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # the header line, or not importtime's
        totals[fields[2].strip().split(".")[0]] += int(fields[0]) / 1e6
    return totals


def baseline(env: dict[str, str], runs: int) -> float:
    """The bare interpreter start on this machine, for scale."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=env, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(label: str, times: list[float], target: float, bare: float, heavy: list[str]) -> None:
    times = sorted(times)
    median = statistics.median(times)
    verdict = "within" if median <= target else "OVER"
    print(
        f"{label}: min {times[0]:.3f} s, median {median:.3f} s, max {times[-1]:.3f} s"
        f" ({median / bare:.1f}x python -c pass); target {target} s:"
        f" {verdict} ({median / target:.2f} of it)"
        f"; heavy imports: {', '.join(heavy) or 'none'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args()
    server = CannedServer()
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "HOME": home,
            "XDG_CONFIG_HOME": os.path.join(home, "config"),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            "LUXXON_BASE_URL": server.base_url,
        }
        for name in ("CREDENTIALS_DIRECTORY", "LUXXON_PROFILE", "LUXXON_API_KEY"):
            env.pop(name, None)
        # a made-up key in the profile: the canned server accepts anything
        subprocess.run([sys.executable, "-c", STORE_KEY], env=env, check=True)
        try:
            bare = baseline(env, options.runs)
            print(f"python -c pass (median of {options.runs}): {bare:.3f} s")

            time_exit(["--help"], env)  # warm the OS file cache: we measure interpreter cold start
            help_times = [time_exit(["--help"], env) for _ in range(options.runs)]
            help_heavy = heavy_imports(["--help"], env, lambda: None)
            report("luxxon --help (to exit)", help_times, TARGET_HELP_SECONDS, bare, help_heavy)

            time_request(server, env)
            call_times = [time_request(server, env) for _ in range(options.runs)]
            call_heavy = heavy_imports(CANCEL_ALL, env, server.serve_one)
            report(
                "luxxon sessions cancel-all (to its HTTP request)",
                call_times,
                TARGET_CALL_SECONDS,
                bare,
                call_heavy,
            )

            profile = import_profile(server, env)
        finally:
            server.close()
    top = ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in profile.most_common(8))
    print(
        f"cancel-all imports, self time by package (-X importtime, least of {PROFILE_RUNS}): {top}"
    )
    print(f"  total {sum(profile.values()) * 1000:.0f} ms over {len(profile)} packages")
    return 0 if not help_heavy and not call_heavy else 1


if __name__ == "__main__":
    sys.exit(main())
