"""The CLI's edge: where errors become one line on stderr and an exit code, and nowhere else.

Every `FragfixError` gives its own code (errors.py); usage errors give 2; Ctrl-C and SIGTERM give
130 after the cleanup (a second signal cannot interrupt it); an unexpected exception is still one
line, with `--debug` for the traceback.
"""
from __future__ import annotations

import errno
import functools
import signal
import sys

import typer
from rich.console import Console
from rich.markup import escape

from fragfix.files.atomic import COMPLETED
from fragfix.errors import ExitCode, FragfixError

try:  # typer >= 0.20 vendors click; older releases use it as a dependency
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover
    from click import exceptions as _cx


class OneLineErrors(typer.core.TyperGroup):
    """Usage errors (unknown option, missing argument, bad value) as one line too, exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _cx.ClickException as e:
            ctx = getattr(e, "ctx", None)
            where = ctx.command_path if ctx is not None else (prog_name or "fragfix")
            if e.format_message():  # empty when no arguments printed the help
                sys.stderr.write(shown(f"fragfix: error: {e.format_message()} (see {where} --help)") + "\n")
            sys.exit(e.exit_code)
        except typer.Abort:
            sys.stderr.write("fragfix: interrupted\n")
            sys.exit(int(ExitCode.INTERRUPTED))
        sys.exit(rv if isinstance(rv, int) else 0)


def shown(text: str) -> str:
    """Text as it may reach a terminal: characters that are not printable (escape sequences, line
    breaks, bidirectional overrides in a file name) become visible escapes, as `ls -b` and git show
    them; a byte the file system name could not decode (a surrogate) shows as that byte."""
    if text.isprintable():
        return text
    out = []
    for c in text:
        if c.isprintable():
            out.append(c)
        elif 0xDC80 <= ord(c) <= 0xDCFF:
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        else:
            out.append(c.encode("unicode_escape").decode("ascii"))
    return "".join(out)


class SafeConsole(Console):
    """A console whose text never carries a control character from a name to the terminal: every
    string printed goes through shown() (markup, being printable, is left as it is)."""

    def print(self, *objects, **kwargs):
        super().print(*(shown(o) if isinstance(o, str) else o for o in objects), **kwargs)


err = SafeConsole(stderr=True, highlight=False)
STATE = {"debug": False}
PATH_ERRNOS = (errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.ENOENT)


def _raise_interrupt(signum, frame):
    # the first SIGINT/SIGTERM starts the cleanup; more of them, close behind, must not interrupt
    # it (a second KeyboardInterrupt inside an except block printed a traceback, or exit 143)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def contract(fn):
    """Run a command with fragfix's error contract: one line and a distinct exit code."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):  # SIGTERM cleans up like Ctrl-C
                signal.signal(sig, _raise_interrupt)
        except ValueError:  # not the main thread (some test runners)
            pass
        COMPLETED.clear()  # this command's own commits only (tests run many in one process)
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except FragfixError as e:
            if STATE["debug"]:
                raise
            err.print(f"[bold red]fragfix: error:[/] {escape(str(e))}", markup=True, soft_wrap=True)
            raise typer.Exit(int(e.exit_code))
        except KeyboardInterrupt:
            if COMPLETED:  # after the run's outputs were all in place: the run has succeeded
                done = [p for batch in COMPLETED for p in batch]
                err.print(escape(f"fragfix: interrupted after the run was complete; its {len(done)} output(s) are "
                                 "in place" + (": " + ", ".join(done[:3]) + (" …" if len(done) > 3 else "") if done
                                               else "")), soft_wrap=True)
                raise typer.Exit(0)
            err.print("fragfix: interrupted; no partial output was left behind")
            raise typer.Exit(int(ExitCode.INTERRUPTED))
        except MemoryError:
            err.print("fragfix: error: out of memory (try a smaller --batch-size)")
            raise typer.Exit(int(ExitCode.IO))
        except OSError as e:
            if STATE["debug"]:
                raise
            err.print(f"fragfix: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), soft_wrap=True, markup=False)
            # a path the user typed that cannot name a file is bad input, not a failing machine
            raise typer.Exit(int(ExitCode.INVALID if e.errno in PATH_ERRNOS else ExitCode.IO))
        except Exception as e:  # a bug: still one line, and the way to see more
            if STATE["debug"]:
                raise
            err.print(f"fragfix: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)",
                      soft_wrap=True, markup=False)
            raise typer.Exit(int(ExitCode.IO))
    return wrapper
