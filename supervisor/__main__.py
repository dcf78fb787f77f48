"""
The ``ringfence`` command line (also ``python -m supervisor``): ``ringfence demo`` and
``ringfence config FILE`` (see ``ringfence --help``).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from . import __version__

__all__ = ("main",)


_DESCRIPTION = (
    "ringfence demo runs a flaky local LLM API and clients protected by the supervisor;"
    " ringfence config FILE checks a configuration file and prints the effective"
    " configuration as TOML."
)


class _Formatter(argparse.HelpFormatter):
    """Adds "(default: ...)" to an option's help, unless the help says its default itself."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or not action.option_strings or action.default is argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)"


def _parser() -> argparse.ArgumentParser:
    # Plain text (no reStructuredText), every option with its default.
    formatter = _Formatter
    parser = argparse.ArgumentParser(
        prog="ringfence", description=_DESCRIPTION, formatter_class=formatter
    )
    parser.add_argument("--version", action="version", version=f"ringfence {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="protect a flaky local LLM API and watch it live (needs ringfence[demo])",
        description="Run a flaky local LLM API and 20 clients protected by ringfence, show"
        " it live, then print a summary and write a timeline plot. Needs the demo extra:"
        " pip install 'ringfence[demo]'.",
        formatter_class=formatter,
    )
    demo.add_argument("--duration", type=float, default=40.0, help="seconds to run")
    demo.add_argument("--clients", type=int, default=20, help="concurrent clients")
    demo.add_argument("--seed", type=int, default=7, help="seed of the fault schedule and jitter")
    demo.add_argument(
        "--scenario",
        choices=("llm", "outage", "flaky", "rate-limited"),
        default="llm",
        help="llm: streamed answers under request and token limits, with slow first"
        " tokens, a 429 spell, mid-stream disconnects and an outage; outage: whole answers"
        " through every fault; flaky: 5xx bursts; rate-limited: 429 spells",
    )
    demo.add_argument(
        "--backend", choices=("asyncio", "trio"), default="asyncio", help="the event loop"
    )
    demo.add_argument(
        "--no-live",
        action="store_true",
        help="plain lines instead of the live view (default: the live view on a terminal)",
    )
    demo.add_argument(
        "--plot",
        type=Path,
        default=Path("demo-out/timeline.png"),
        help="where to write the timeline PNG",
    )
    demo.add_argument(
        "--web",
        action="store_true",
        help="serve the live dashboard on 127.0.0.1 beside the demo and print its URL"
        " (needs --backend asyncio; default: off)",
    )
    demo.add_argument(
        "--replicas",
        type=int,
        default=0,
        metavar="N",
        help="run N replica processes sharing one rate limit through a private redis-server"
        " (needs redis-server and ringfence[redis]) and print what each admits every second"
        " (default: 0, one process)",
    )
    demo.add_argument(
        "--web-port",
        type=int,
        default=None,
        metavar="PORT",
        help="the dashboard's port (default: 8642, or a free port when it is busy; 0: a free port)",
    )
    config = commands.add_parser(
        "config",
        help="check a configuration file; print the effective configuration or every error",
        description="Validate FILE with the RINGFENCE_* environment variables applied, then"
        " print each dependency's effective policies as TOML, defaults filled in (exit 0),"
        " or every problem (exit 2).",
        formatter_class=formatter,
    )
    config.add_argument("file", metavar="FILE", help="a ringfence TOML file")
    return parser


def _check_config(file: str) -> int:
    """``ringfence config FILE``: the effective configuration on stdout, or every error."""
    # Imported here so `ringfence demo` never pays for it, and the reverse: no rich here.
    from ._config import ConfigError, load_config

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            config = load_config(file)
        except ConfigError as error:
            # argparse's style: "prog: error: ..." on stderr, exit status 2.
            sys.stderr.write(f"ringfence config: error: {error}\n")
            return 2
    for warning in caught:
        sys.stderr.write(f"ringfence config: warning: {warning.message}\n")
    from ._effective import effective_toml

    sys.stdout.write(effective_toml(config))
    return 0


def _replicas_demo(args: argparse.Namespace) -> int:
    """``ringfence demo --replicas N``: N replica processes pacing one shared rate limit."""
    if not 2 <= args.replicas <= 16 or args.web:
        _parser().error("--replicas takes 2 to 16 replicas, and no --web")
    try:
        import supervisor.integrations.redis  # noqa: F401 - says which extra is missing
    except ImportError as error:
        _parser().error(f"--replicas: {error}")
    from ._demo._replicas import ReplicasConfig, run_replicas, summary
    from .integrations.redis._server import INSTALL_HINT, find_redis_server

    if find_redis_server() is None:
        sys.stderr.write(
            f"ringfence demo: error: --replicas starts a redis-server of its own, and {INSTALL_HINT}\n"
        )
        return 2
    config = ReplicasConfig(
        replicas=args.replicas,
        duration=args.duration,
        clients=args.clients,
        backend=args.backend,
        seed=args.seed,
    )
    result = run_replicas(config)
    sys.stdout.write(summary(result))
    return 0 if result.lost == 0 else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ringfence`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "config":
        return _check_config(args.file)
    if args.duration <= 0 or args.clients < 1:
        _parser().error("--duration must be > 0 and --clients >= 1")
    if args.replicas:
        return _replicas_demo(args)
    if args.web and args.backend != "asyncio":
        # uvicorn runs on asyncio only, and the dashboard must run on the supervisor's loop.
        _parser().error(
            "--web needs --backend asyncio (the dashboard's server, uvicorn, runs on asyncio only)"
        )
    if args.web_port is not None and not (args.web and 0 <= args.web_port <= 65535):
        _parser().error("--web-port needs --web and a port in 0-65535")
    if args.web:
        try:
            import supervisor.integrations.asgi  # noqa: F401 - says which extra is missing
        except ImportError as error:
            _parser().error(f"--web: {error}")
    try:
        from rich.console import Console
    except ImportError:
        _parser().error("demo needs the demo extra: pip install 'ringfence[demo]'")

    from ._demo import DemoConfig, run_demo
    from ._demo._report import plot_timeline, print_summary
    from ._demo._web import DashboardPortError

    config = DemoConfig(
        duration=args.duration,
        clients=args.clients,
        seed=args.seed,
        scenario=args.scenario,
        backend=args.backend,
        live=not args.no_live and sys.stdout.isatty(),
        plot=str(args.plot),
        web=args.web,
        web_port=args.web_port,
    )
    console = Console()
    try:
        result = run_demo(config)
    except DashboardPortError as error:
        sys.stderr.write(f"ringfence demo: error: {error}\n")
        return 2
    print_summary(result, console)
    path = plot_timeline(result, args.plot)
    console.print(f"timeline plot: {path.resolve()}")
    lost = result.issued - len(result.outcomes)
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
