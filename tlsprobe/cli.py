"""Command line: ``tlsprobe analyze``, ``sniff``, ``anomalies``, ``rules``, ``tlsprobe --version``.

A thin layer: it parses options, picks a sink, and maps outcomes to exit codes.  Data
goes to stdout (or ``-o``), diagnostics to stderr.

Exit codes: 0 success; 1 internal error; 2 usage error, an unreadable capture (the
other captures are still analysed), a directory without a capture, or a live capture
that cannot start; 3 a live
capture ended because an interface went down; 130 interrupted (``analyze``; a live
capture stops cleanly on Ctrl-C with 0).  A closed stdout (``| head``)
ends the run quietly with 0.  No traceback is ever printed unless ``TLSPROBE_DEBUG``
is set.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import click
from rich.console import Console

from tlsprobe import __version__
from tlsprobe.anomalies import ANOMALIES
from tlsprobe.capture.tree import Expansion, expand
from tlsprobe.detect import Problem, RuleError, RuleSet, collect_packs
from tlsprobe.detect.asn import AsnDbError
from tlsprobe.detect.context import NO_OPTIONS, ContextOptions
from tlsprobe.errors import CaptureError
from tlsprobe.pipeline import Stats
from tlsprobe.sinks import FORMATS, Sink, make_sink
from tlsprobe.sinks.progress import RunProgress
from tlsprobe.sinks.run import OnlyIntercepted, default_jobs, run
from tlsprobe.sinks.summary import print_summary, write_summary_json
from tlsprobe.sinks.table import no_color_requested
from tlsprobe.text import markdown_escape, terminal_safe
from tlsprobe.wire.x509 import set_user_trust

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_IFACE_DOWN, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class Failure(click.ClickException):
    """An error reported as one ``tlsprobe: error:`` line, exit code 2."""

    exit_code = EXIT_INPUT


def error_line(message: str) -> str:
    """``tlsprobe: error: <message>``, safe for a terminal."""
    return f"tlsprobe: error: {terminal_safe(message, 1000)}"


def _error(message: str) -> None:
    click.echo(error_line(message), err=True)


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    """A UTF-8 text stream on ``path`` or stdout; stdout is flushed, never closed."""
    if path is None or path == "-":
        wrapper = io.TextIOWrapper(click.get_binary_stream("stdout"), encoding="utf-8",
                                   newline="")
        try:
            yield wrapper
            wrapper.flush()
        except BrokenPipeError:
            _quiet_stdout()  # so flushing what is left (below, and at exit) cannot fail
            raise
        finally:
            with contextlib.suppress(Exception):
                wrapper.detach()
        return
    try:
        f = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as exc:
        raise Failure(f"cannot write {path}: {exc.strerror or exc}") from None
    with f:
        yield f


def _quiet_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush is silent."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def detection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--trust`` and ``--asn-db``: what the cross-flow detection is told by the user."""
    f = click.option("--asn-db", metavar="FILE", type=click.Path(dir_okay=False),
                     help="MaxMind-format ASN database (GeoLite2-ASN, DB-IP ASN): the server's network "
                          "owner goes into the evidence (needs tlsprobe[asn]).")(f)
    return click.option("--trust", "trust", multiple=True, metavar="PEM", type=click.Path(dir_okay=False),
                        help="CA certificates whose chains are genuine (your own or your company's CA), and "
                             "leaf certificates whose names you vouch for (repeatable).")(f)


def context_options(trust: tuple[str, ...], asn_db: str | None) -> ContextOptions:
    """Load ``--trust`` bundles and check ``--asn-db``; a problem is one error line (exit 2)."""
    bundles = []
    for path in trust:
        try:
            with open(path, "rb") as fh:
                bundles.append(fh.read())
        except OSError as exc:
            raise Failure(f"cannot read --trust {path}: {exc.strerror or exc}") from None
    try:
        names = set_user_trust(bundles) if bundles else frozenset()
    except ValueError:
        raise Failure(f"--trust: no PEM certificate in {', '.join(trust)}") from None
    options = ContextOptions(names, asn_db)
    try:
        options.make()  # opens the database once, so a bad file fails before any work
    except AsnDbError as exc:
        raise Failure(str(exc)) from None
    return options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="tlsprobe",
                      message="%(prog)s %(version)s")
def cli() -> None:
    """Find TLS handshakes on any TCP port in packet captures and fingerprint them."""


@cli.command()
@click.argument("captures", nargs=-1, required=True, metavar="CAPTURE|DIR...")
@click.option("-f", "-F", "--format", "fmt", type=click.Choice(FORMATS),
              help="Output format [default: table on a terminal, else jsonl] (-F as in 'sniff').")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write records to FILE instead of stdout.")
@click.option("--no-progress", is_flag=True, help="Never show the progress bar.")
@click.option("-q", "--quiet", is_flag=True, help="No summary (and no progress bar) on stderr.")
@click.option("--summary-json", type=click.Path(dir_okay=False, allow_dash=False),
              help="Also write the run summary as JSON to FILE.")
@click.option("--line-buffered", is_flag=True,
              help="Flush after every record (default on a terminal).")
@click.option("-j", "--jobs", type=click.IntRange(min=1),
              help="Worker processes for large files [default: one per core, at most 4].")
@click.option("--only-intercepted", is_flag=True, help="Output only handshakes with an interception verdict.")
@click.option("--http", is_flag=True,
              help="Also report plain HTTP requests on any port (kind: http), checked for block pages.")
@click.option("--rules", "rules_paths", multiple=True, metavar="FILE",
              help="Also use the rule pack FILE (repeatable); see 'tlsprobe rules'.")
@detection_options
def analyze(captures: tuple[str, ...], fmt: str | None, output: str | None, no_progress: bool,
            quiet: bool, summary_json: str | None, line_buffered: bool, jobs: int | None,
            only_intercepted: bool, http: bool, rules_paths: tuple[str, ...], trust: tuple[str, ...],
            asn_db: str | None) -> None:
    """Analyse pcap/pcapng CAPTUREs (gzip'd or not; - is stdin) and print every handshake.

    A DIR stands for every capture below it, in path order (found by content, not by
    name; other files are skipped).  The run summary (packets, flows, handshakes,
    anomalies) goes to stderr.
    """
    try:
        _analyze(captures, fmt, output, no_progress, quiet, summary_json, line_buffered,
                 jobs or default_jobs(), rules_paths, only_intercepted, http, context_options(trust, asn_db))
    except BrokenPipeError:
        # Whoever read stdout has gone (``| head``): stop quietly.  Caught here because
        # click turns EPIPE into exit code 1 before main() could see it.
        raise click.exceptions.Exit(EXIT_OK) from None


def _analyze(captures: tuple[str, ...], fmt: str | None, output: str | None, no_progress: bool,
             quiet: bool, summary_json: str | None, line_buffered: bool, jobs: int,
             rules_paths: tuple[str, ...] = (), only_intercepted: bool = False, http: bool = False,
             context: ContextOptions = NO_OPTIONS) -> None:
    if "-" in captures and sys.stdin is not None and sys.stdin.isatty():
        raise Failure("refusing to read a capture from a terminal (pipe one into '-')")
    with _output(output) as out:
        found = _expand(captures, quiet)  # after opening the output: that failing says it all
        to_terminal = out.isatty()
        sink: Sink = make_sink(fmt or ("table" if to_terminal else "jsonl"), out,
                               flush=line_buffered or to_terminal)
        if only_intercepted:
            sink = OnlyIntercepted(sink)
        err_console = Console(stderr=True, no_color=no_color_requested(), highlight=False)
        # The bar shares the screen with nothing: only when stderr is a terminal and
        # the records are not being printed to that terminal too.
        show = not (no_progress or quiet or to_terminal) and err_console.is_terminal
        progress = RunProgress(err_console, Stats()) if show else None

        def report(message: str) -> None:
            if progress is not None:
                progress.print_line(error_line(message))  # above the bar, not through it
            else:
                _error(message)

        with progress if progress is not None else contextlib.nullcontext():
            result = run(found.paths, sink, progress=progress, on_error=report, jobs=jobs,
                         rules_paths=rules_paths, http=http, context=context)
        sink.close()
    result.errors[:0] = found.errors
    summary = result.summary()
    # Nothing was readable: the error lines say it all.
    if not quiet and (result.stats.files or not result.errors):
        print_summary(summary, sys.stderr)
    if summary_json is not None:
        try:
            with open(summary_json, "w", encoding="utf-8") as f:
                write_summary_json(summary, f)
        except OSError as exc:
            raise Failure(f"cannot write {summary_json}: {exc.strerror or exc}") from None
    if result.errors:
        raise SystemExit(EXIT_INPUT)


def _expand(inputs: tuple[str, ...], quiet: bool) -> Expansion:
    """Directories among ``inputs`` replaced by their captures; an error line per problem."""
    found = expand(inputs)
    for message in found.errors:
        _error(message)
    if not quiet:
        for directory, n in found.skipped.items():
            click.echo(terminal_safe(f"tlsprobe: {directory}: skipped {n} file{'' if n == 1 else 's'} that "
                                     f"{'is' if n == 1 else 'are'} not a capture", 1000), err=True)
    return found


LINK_NAMES = {1: "Ethernet", 101: "raw IP", 147: "unknown link type"}


@cli.command()
@click.argument("expression", nargs=-1, metavar="[BPF EXPRESSION...]")
@click.option("-i", "--interface", "interfaces", multiple=True, required=True, metavar="IFACE",
              help="Capture on IFACE (repeatable; 'any' for every interface present).")
@click.option("-f", "--filter", "bpf", metavar="BPF",
              help="Capture filter in tcpdump syntax, e.g. 'tcp or udp' (also as trailing words).")
@click.option("-F", "--format", "fmt", type=click.Choice(FORMATS),
              help="Output format [default: table on a terminal, else jsonl].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write records to FILE instead of stdout.")
@click.option("-w", "--write", type=click.Path(dir_okay=False),
              help="Also write the captured packets to FILE (pcap; pcapng for *.pcapng or mixed link types).")
@click.option("-c", "--count", type=click.IntRange(min=1), help="Stop after N packets.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop after SECONDS.")
@click.option("--handshakes", type=click.IntRange(min=1), metavar="N", help="Stop after N records.")
@click.option("-p", "--no-promisc", is_flag=True, help="Do not put the interface into promiscuous mode.")
@click.option("-B", "--buffer-size", type=click.IntRange(min=1, max=2047), default=32, show_default=True,
              metavar="MIB", help="Kernel receive buffer per interface, in MiB.")
@click.option("-q", "--quiet", is_flag=True, help="No start line and no summary on stderr.")
@click.option("--summary-json", type=click.Path(dir_okay=False, allow_dash=False),
              help="Also write the run summary as JSON to FILE.")
@click.option("--only-intercepted", is_flag=True, help="Output only handshakes with an interception verdict.")
@click.option("--http", is_flag=True,
              help="Also report plain HTTP requests on any port (kind: http), checked for block pages.")
@click.option("--rules", "rules_paths", multiple=True, metavar="FILE",
              help="Also use the rule pack FILE (repeatable); see 'tlsprobe rules'.")
@detection_options
def sniff(expression: tuple[str, ...], interfaces: tuple[str, ...], bpf: str | None, fmt: str | None,
          output: str | None, write: str | None, count: int | None, duration: float | None,
          handshakes: int | None, no_promisc: bool, buffer_size: int, quiet: bool, summary_json: str | None,
          only_intercepted: bool, http: bool, rules_paths: tuple[str, ...], trust: tuple[str, ...],
          asn_db: str | None) -> None:
    """Capture live traffic and print every handshake as soon as its verdict is final.

    The same records as 'analyze', flushed one by one.  Ctrl-C (or SIGTERM, --count,
    --duration, --handshakes) stops cleanly: open handshakes are emitted, the pcap file
    is closed, the summary (with the kernel's drop count) goes to stderr, exit code 0.
    An interface going down ends the capture the same way with exit code 3.  Needs
    root or CAP_NET_RAW.
    """
    from tlsprobe.capture.live import LiveCapture
    from tlsprobe.live import SniffOptions, StopFlag, stop_on_signals
    from tlsprobe.live import sniff as run_sniff

    if bpf and expression:
        raise Failure("give the capture filter either with -f or as trailing words, not both")
    options = SniffOptions(interfaces, bpf or (" ".join(expression) or None), write, count or 0, duration,
                           handshakes or 0, not no_promisc, buffer_size << 20, rules_paths, http,
                           context_options(trust, asn_db))
    try:
        with _output(output) as out, stop_on_signals(StopFlag()) as stop:
            to_terminal = out.isatty()
            sink: Sink = make_sink(fmt or ("table" if to_terminal else "jsonl"), out, flush=True)
            if only_intercepted:
                sink = OnlyIntercepted(sink)

            def started(capture: LiveCapture) -> None:
                if quiet:
                    return
                where = ", ".join(f"{name} ({LINK_NAMES.get(lt, lt)})" for name, lt in capture.interfaces)
                filt = f", filter {options.bpf!r}" if options.bpf else ""
                down = f" (down, not captured: {', '.join(capture.skipped)})" if capture.skipped else ""
                click.echo(terminal_safe(f"tlsprobe: listening on {where}{down}{filt}; Ctrl-C to stop", 2000),
                           err=True)

            result = run_sniff(options, sink, stop=stop, on_start=started)
            sink.close()
    except BrokenPipeError:
        raise click.exceptions.Exit(EXIT_OK) from None
    except CaptureError as exc:
        raise Failure(str(exc)) from None
    summary = result.summary()
    if result.interface_error:
        _error(result.interface_error)
    if not quiet:
        print_summary(summary, sys.stderr)
    if summary_json is not None:
        try:
            with open(summary_json, "w", encoding="utf-8") as f:
                write_summary_json(summary, f)
        except OSError as exc:
            raise Failure(f"cannot write {summary_json}: {exc.strerror or exc}") from None
    if result.interface_error:
        raise SystemExit(EXIT_IFACE_DOWN)


@cli.command()
@click.option("--markdown", is_flag=True, help="Print docs/anomalies.md (Markdown).")
def anomalies(markdown: bool) -> None:
    """List the anomaly codes tlsprobe records, with what each means."""
    if markdown:
        click.echo(anomalies_markdown(), nl=False)
        return
    width = max(len(code) for code in ANOMALIES)
    for code, text in ANOMALIES.items():
        click.echo(f"{code:<{width}}  {text}")


def anomalies_markdown() -> str:
    """docs/anomalies.md: every anomaly code by area, generated from tlsprobe.anomalies."""
    lines = [
        "# Anomaly codes",
        "",
        "<!-- Generated by `tlsprobe anomalies --markdown`; edit tlsprobe/anomalies.py. -->",
        "",
        "An anomaly is recorded on the handshake it concerns (the `anomalies` list of a",
        "record) and counted in the run summary whenever input is damaged, hostile or cut",
        "by a limit. Codes never change meaning; new ones may be added.",
    ]
    area = None
    for code, text in ANOMALIES.items():
        head = code.split(".", 1)[0]
        if head != area:
            area = head
            lines += ["", f"## {markdown_escape(head)}", "", "| Code | Meaning |", "| --- | --- |"]
        lines.append(f"| `{code}` | {markdown_escape(text)} |")
    return "\n".join(lines) + "\n"


@cli.group()
def rules() -> None:
    """Interception rule packs: list the rules, check your own packs.

    The rule language is described in docs/rules.md.
    """


def _print_problems(problems: list[Problem]) -> None:
    """One ``FILE:LINE: message`` line per problem on stderr."""
    for problem in problems:
        click.echo(terminal_safe(str(problem), 1000), err=True)


@rules.command("list")
@click.option("--rules", "paths", multiple=True, metavar="FILE",
              help="Also load the rule pack FILE (repeatable).")
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
def rules_list(paths: tuple[str, ...], fmt: str) -> None:
    """List the built-in rules and those in FILEs: id, pattern, provider, confidence, pack, title."""
    packs, problems = collect_packs(paths)
    if problems:
        _print_problems(problems)
        raise SystemExit(EXIT_INPUT)
    ruleset = RuleSet.from_packs(packs)
    if fmt == "json":
        click.echo(json.dumps([{
            "id": r.id, "pattern": r.pattern, "provider": r.provider, "confidence": r.confidence,
            "pack": r.pack, "title": r.title, "applies_to": r.applies_to,
            "valid_from": r.valid_from.isoformat() if r.valid_from else None,
            "valid_until": r.valid_until.isoformat() if r.valid_until else None,
            "references": list(r.references), "description": r.description, "source": r.source,
        } for r in ruleset], indent=2))
        return
    rows = [["ID", "PATTERN", "PROVIDER", "CONF", "PACK", "TITLE"]]
    rows += [[r.id, r.pattern, r.provider or "-", f"{r.confidence:.2f}", r.pack, r.title] for r in ruleset]
    rows = [[terminal_safe(cell, 200) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True)) + "  " + row[5])
    if not ruleset:
        click.echo("no rules loaded (pass a pack with --rules FILE)", err=True)


@rules.command("check")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
def rules_check(files: tuple[str, ...]) -> None:
    """Check rule pack FILEs: "FILE: ok: N rules" each, or one FILE:LINE: message per problem.

    Rule ids must be unique across the FILEs and the built-in packs.  Exit code 2 when
    any FILE has a problem.
    """
    packs, problems = collect_packs(files)
    counts = {pack.source: len(pack.rules) for pack in packs if not pack.builtin}
    bad = {problem.file for problem in problems}
    for name in dict.fromkeys(files):
        if name not in bad and name in counts:
            n = counts[name]
            click.echo(f"{terminal_safe(name, 1000)}: ok: {n} rule{'' if n == 1 else 's'}")
    if problems:
        _print_problems(problems)
        raise SystemExit(EXIT_INPUT)


@cli.command()
@click.argument("inputs", nargs=-1, required=True, metavar="CAPTURE|DIR|RESULTS.jsonl...")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for report.md, its SVG charts and report.html (created if missing).")
@click.option("--title", default="TLS handshakes and interception: tlsprobe report", show_default=True,
              help="Title of the report.")
@click.option("--top", type=click.IntRange(min=1, max=1000), default=20, show_default=True,
              help="Rows of the port and fingerprint tables.")
@click.option("--redact", is_flag=True, help="Replace client IPs with stable keyed pseudonyms.")
@click.option("--redact-sni", is_flag=True, help="Replace SNIs and HTTP Host names too (implies --redact).")
@click.option("--redact-key", metavar="TEXT",
              help="Key for the pseudonyms (same key, same pseudonyms across reports) [default: random; "
                   "implies --redact].")
@click.option("--http/--no-http", default=True, show_default=True,
              help="Include plain HTTP requests of captures (block pages).")
@click.option("--rules", "rules_paths", multiple=True, metavar="FILE",
              help="Also use the rule pack FILE (repeatable).")
@click.option("-j", "--jobs", type=click.IntRange(min=1),
              help="Worker processes for large captures [default: one per core, at most 4].")
@click.option("-q", "--quiet", is_flag=True, help="Do not list the files written.")
@detection_options
def report(inputs: tuple[str, ...], out_dir: str, title: str, top: int, redact: bool, redact_sni: bool,
           redact_key: str | None, http: bool, rules_paths: tuple[str, ...], jobs: int | None, quiet: bool,
           trust: tuple[str, ...], asn_db: str | None) -> None:
    """Write a fingerprint and interception report (Markdown with SVG charts, and one HTML file).

    INPUTS are captures (pcap/pcapng, gzip'd or not), JSON Lines written by 'analyze',
    and --summary-json files, in any mix: everything is merged into one report.  A DIR
    stands for every capture below it (JSON Lines and summaries are read only when named).
    """
    from tlsprobe.report import Options, make_report
    from tlsprobe.report.redact import Redactor

    if "-" in inputs and sys.stdin is not None and sys.stdin.isatty():
        raise Failure("refusing to read a capture from a terminal (pipe one into '-')")

    redacting = redact or redact_sni or redact_key is not None
    options = Options(title=title, top=top, redacted=redacting, redacted_names=redact_sni)
    redactor = Redactor.from_key(redact_key, names=redact_sni) if redacting else None
    try:
        result = make_report(inputs, out_dir, options=options, redactor=redactor, jobs=jobs or default_jobs(),
                             context=context_options(trust, asn_db),
                             rules_paths=rules_paths, http=http, on_error=_error,
                             on_warning=lambda m: click.echo(f"tlsprobe: warning: {terminal_safe(m, 1000)}",
                                                             err=True))
    except OSError as exc:  # the output directory (reading problems are reported per input)
        raise Failure(f"cannot write {exc.filename or out_dir}: {exc.strerror or exc}") from None
    if not result.readable:
        raise SystemExit(EXIT_INPUT)  # the error lines said why; nothing was written
    if not quiet:
        for path in result.files:
            if path.endswith((".md", ".html")):
                click.echo(f"tlsprobe: wrote {terminal_safe(path, 1000)}", err=True)
    if result.errors:
        raise SystemExit(EXIT_INPUT)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tlsprobe`` script; returns the exit code."""
    try:
        rc = cli.main(args=argv, prog_name="tlsprobe", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("tlsprobe: interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.UsageError as exc:
        exc.show()  # keeps click's "Usage: ..." hint
        return EXIT_INPUT
    except click.ClickException as exc:
        _error(exc.format_message())
        return exc.exit_code or EXIT_INPUT
    except RuleError as exc:
        _print_problems(exc.problems)
        return EXIT_INPUT
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        click.echo("tlsprobe: interrupted", err=True)
        return EXIT_INTERRUPTED
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_INTERNAL
    except Exception as exc:
        if os.environ.get("TLSPROBE_DEBUG"):
            raise
        _error(f"internal error: {type(exc).__name__}: {exc} "
               "(set TLSPROBE_DEBUG=1 for a traceback)")
        return EXIT_INTERNAL
    return rc if isinstance(rc, int) else EXIT_OK
