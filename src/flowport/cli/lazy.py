"""Sub-commands imported when they are used (issue 16: a CLI that starts instantly).

The top-level group knows its sub-commands and sub-groups by name and one-line
help (a static table, ``LazyCommand``); their modules are imported, and their
Typer apps turned into commands, only when one is resolved: run, its
``--help``, or completion below it. ``flowport --help`` lists them from the
table and is rendered here, in Typer's layout, without ``typer.rich_utils``:
that module imports rich's Markdown (markdown-it) and traceback renderers,
which a help page of plain text does not use.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections import defaultdict
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import typer
from typer import _click
from typer._click.shell_completion import CompletionItem
from typer.core import HAS_RICH, TyperArgument, TyperCommand, TyperGroup, TyperOption

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console, RenderableType
    from rich.table import Table
    from rich.text import Text

__all__ = ["LazyCommand", "LazyGroup"]

_EMOJI_CODE = re.compile(r":\S*?:")


@dataclass(frozen=True)
class LazyCommand:
    """A sub-command (a function) or sub-group (a Typer app) imported on use."""

    name: str
    #: ``package.module:attribute``: the command's function, or the group's ``typer.Typer``.
    target: str
    #: What ``flowport --help`` shows; tests/cli/test_startup_imports.py checks it is the command's own.
    help: str
    group: bool = False


class _Commands(MutableMapping[str, _click.Command]):
    """A group's commands by name, in listing order; a lazy one is built when it is first looked up.

    The order is Typer's: commands before groups. The lazy commands come before the
    group's own, the lazy groups after its own.
    """

    def __init__(
        self,
        own: MutableMapping[str, _click.Command],
        lazy: tuple[LazyCommand, ...],
        load: Callable[[LazyCommand], _click.Command],
    ) -> None:
        self.lazy = {entry.name: entry for entry in lazy}
        self._load = load
        self._order = [
            *(entry.name for entry in lazy if not entry.group),
            *(name for name in own if name not in self.lazy),
            *(entry.name for entry in lazy if entry.group),
        ]
        self._built: dict[str, _click.Command] = dict(own)

    def is_built(self, name: str) -> bool:
        return name in self._built

    def __getitem__(self, name: str) -> _click.Command:
        command = self._built.get(name)
        if command is None:
            entry = self.lazy[name]  # KeyError: no such command
            command = self._built[name] = self._load(entry)
        return command

    def __setitem__(self, name: str, command: _click.Command) -> None:
        if name not in self._order:
            self._order.append(name)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        self._order.remove(name)
        self._built.pop(name, None)
        self.lazy.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, name: object) -> bool:
        return name in self._order


def _short_help(name: str, text: str, deprecated: bool, limit: int = 45) -> str:
    """What click's ``get_short_help_str`` makes of a command's help (completion, plain listing)."""
    return TyperCommand(name, help=text, deprecated=deprecated).get_short_help_str(limit)


class LazyGroup(TyperGroup):
    """A Typer group whose ``lazy_commands`` are imported when they are used.

    Subclass it with the table and pass the subclass as ``cls=`` to ``typer.Typer``.
    """

    lazy_commands: ClassVar[tuple[LazyCommand, ...]] = ()

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands: _Commands = _Commands(self.commands, self.lazy_commands, self._load)

    def _load(self, entry: LazyCommand) -> _click.Command:
        """The entry's command as ``app.command(name)`` or ``app.add_typer(sub_app, name=name)`` makes it."""
        module_name, _, attribute = entry.target.partition(":")
        target = getattr(importlib.import_module(module_name), attribute)
        holder = typer.Typer(
            rich_markup_mode=self.rich_markup_mode,
            suggest_commands=self.suggest_commands,
            add_completion=False,
            pretty_exceptions_enable=False,
        )
        if entry.group:
            assert isinstance(target, typer.Typer), f"{entry.target} is not a Typer app"
            holder.add_typer(target, name=entry.name)
        else:
            holder.command(entry.name)(target)
        return typer.main.get_group(holder).commands[entry.name]

    def list_commands(self, ctx: _click.Context) -> list[str]:
        return list(self.commands)

    def summary(self, name: str) -> tuple[str, bool]:
        """The help a listing shows for ``name`` (without importing it) and whether it is deprecated."""
        if self.commands.is_built(name):
            command = self.commands[name]
            return command.short_help or command.help or "", bool(command.deprecated)
        return self.commands.lazy[name].help, False

    def _listed(self, ctx: _click.Context) -> list[tuple[str, str, bool]]:
        """(name, help, deprecated) of every visible command, in order, importing none of them."""
        listed = []
        for name in self.list_commands(ctx):
            if self.commands.is_built(name) and self.commands[name].hidden:
                continue
            listed.append((name, *self.summary(name)))
        return listed

    def shell_complete(self, ctx: _click.Context, incomplete: str) -> list[CompletionItem]:
        results = [
            CompletionItem(name, help=_short_help(name, text, deprecated))
            for name, text, deprecated in self._listed(ctx)
            if name.startswith(incomplete)
        ]
        # The group's options (TyperGroup's own completion would build every command to list them).
        results.extend(_click.Command.shell_complete(self, ctx, incomplete))
        return results

    def format_commands(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        """The plain (non-rich) listing, as TyperGroup writes it, from the summaries."""
        rows = self._listed(ctx)
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl(
                    [(name, _short_help(name, text, deprecated, limit)) for name, text, deprecated in rows]
                )

    def parse_args(self, ctx: _click.Context, args: list[str]) -> list[str]:
        if not args and self.no_args_is_help and not ctx.resilient_parsing and self._rich_help():
            # Typer's NoArgsIsHelpError would print the same help and exit 2, importing typer.rich_utils
            # on the way only to find it has no error to show.
            ctx.get_help()
            ctx.exit(2)
        return super().parse_args(ctx, args)

    def _rich_help(self) -> bool:
        return HAS_RICH and self.rich_markup_mode == "rich"

    def format_help(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        if self._rich_help():
            _RichHelp(ctx).print_group(self)
        else:
            # Plain click help (format_commands above), or Markdown help texts (typer.rich_utils).
            super().format_help(ctx, formatter)


def _grid(*, highlight: bool) -> Table:
    """The borderless, full-width table of a help panel (Typer's rich help layout)."""
    from rich.table import Table

    return Table(
        highlight=highlight,
        show_header=False,
        expand=True,
        box=None,
        show_lines=False,
        leading=0,
        border_style=None,
        row_styles=None,
        pad_edge=False,
        padding=(0, 1),
    )


def _markup(text: str, style: str = "") -> Text:
    """``Text.from_markup``; with no emoji code (:name:) to replace, rich need not load its table (3 ms)."""
    from rich.text import Text

    return Text.from_markup(text, style=style, emoji=_EMOJI_CODE.search(text) is not None)


# What follows renders a group's help as typer.rich_utils.rich_format_help does in "rich" markup mode
# (same styles, panels, columns and environment variables; tests/cli/test_startup_imports.py compares
# the two), but with one "Commands" panel: the commands' rich_help_panel is not looked at.


class _RichHelp:
    STYLE_OPTION = "bold cyan"
    STYLE_SWITCH = "bold green"
    STYLE_NEGATIVE_OPTION = "bold magenta"
    STYLE_NEGATIVE_SWITCH = "bold red"
    STYLE_TYPES = "bold yellow"
    STYLE_TYPES_SEPARATOR = "dim"
    STYLE_USAGE = "yellow"
    STYLE_USAGE_COMMAND = "bold"
    STYLE_DEPRECATED = "red"
    STYLE_DEPRECATED_COMMAND = "dim"
    STYLE_HELPTEXT = "dim"
    STYLE_OPTION_DEFAULT = "dim"
    STYLE_OPTION_ENVVAR = "dim yellow"
    STYLE_REQUIRED_SHORT = "red"
    STYLE_REQUIRED_LONG = "dim red"
    STYLE_BORDER = "dim"
    STYLE_COMMANDS_TABLE_FIRST_COLUMN = "bold cyan"

    def __init__(self, ctx: _click.Context) -> None:
        from rich.console import Console
        from rich.highlighter import RegexHighlighter
        from rich.theme import Theme

        class OptionHighlighter(RegexHighlighter):
            highlights: ClassVar[list[str]] = [
                r"(^|\W)(?P<switch>\-\w+)(?![a-zA-Z0-9])",
                r"(^|\W)(?P<option>\-\-[\w\-]+)(?![a-zA-Z0-9])",
                r"(?P<types>\<[^\>]+\>)",
                r"(?P<usage>Usage: )",
            ]

        class NegativeOptionHighlighter(RegexHighlighter):
            highlights: ClassVar[list[str]] = [
                r"(^|\W)(?P<negative_switch>\-\w+)(?![a-zA-Z0-9])",
                r"(^|\W)(?P<negative_option>\-\-[\w\-]+)(?![a-zA-Z0-9])",
            ]

        class TypesHighlighter(RegexHighlighter):
            highlights: ClassVar[list[str]] = [
                r"^(?P<types_sep>(\[|<))",
                r"(?P<types_sep>\|)",
                r"(?P<types_sep>(\]|>))(\.\.\.)?$",
            ]

        self.ctx = ctx
        self.highlighter = OptionHighlighter()
        self.negative_highlighter = NegativeOptionHighlighter()
        self.types_highlighter = TypesHighlighter()
        width = os.getenv("TERMINAL_WIDTH")
        force_terminal: bool | None = None
        if os.getenv("GITHUB_ACTIONS") or os.getenv("FORCE_COLOR") or os.getenv("PY_COLORS"):
            force_terminal = True
        if os.getenv("_TYPER_FORCE_DISABLE_TERMINAL"):
            force_terminal = False
        self.console: Console = Console(
            theme=Theme(
                {
                    "option": self.STYLE_OPTION,
                    "switch": self.STYLE_SWITCH,
                    "negative_option": self.STYLE_NEGATIVE_OPTION,
                    "negative_switch": self.STYLE_NEGATIVE_SWITCH,
                    "types": self.STYLE_TYPES,
                    "types_sep": self.STYLE_TYPES_SEPARATOR,
                    "usage": self.STYLE_USAGE,
                }
            ),
            highlighter=self.highlighter,
            color_system="auto",
            force_terminal=force_terminal,
            width=int(width) if width else None,
        )

    def text(self, text: str, style: str = "") -> Text:
        from rich.text import Text

        text = inspect.cleandoc(text)
        if "\033[" in text:
            return self.highlighter(Text.from_ansi(text, style=style))
        return self.highlighter(_markup(text, style))

    def print_group(self, group: LazyGroup) -> None:
        from rich.align import Align
        from rich.console import Group
        from rich.padding import Padding
        from rich.text import Text

        ctx = self.ctx
        self.console.print(Padding(self.highlighter(group.get_usage(ctx)), 1), style=self.STYLE_USAGE_COMMAND)
        if group.help:
            parts: list[RenderableType] = []
            if group.deprecated:
                parts.append(Text("(deprecated) ", style=self.STYLE_DEPRECATED))
            help_text = inspect.cleandoc(group.help).partition("\f")[0]
            first, *rest = help_text.split("\n\n")
            if not first.startswith("\b"):
                first = first.replace("\n", " ")
            parts.append(self.text(first.strip()))
            if rest:
                parts.append(Text(""))
                parts.append(self.text("\n\n".join(rest), style=self.STYLE_HELPTEXT))
            self.console.print(Padding(Align(Group(*parts), pad=False), (0, 1, 1, 1)))
        arguments: defaultdict[str, list[_click.Parameter]] = defaultdict(list)
        options: defaultdict[str, list[_click.Parameter]] = defaultdict(list)
        for param in group.get_params(ctx):
            if getattr(param, "hidden", False):
                continue
            if isinstance(param, TyperArgument):
                arguments[param.rich_help_panel or "Arguments"].append(param)
            elif isinstance(param, TyperOption):
                options[param.rich_help_panel or "Options"].append(param)
        for panels, default in ((arguments, "Arguments"), (options, "Options")):
            self.print_params(default, panels.get(default, []))
            for name, params in panels.items():
                if name != default:
                    self.print_params(name, params)
        commands = group._listed(ctx)
        if commands:
            width = max(len(name) for name, _, _ in commands)
            self.print_commands("Commands", commands, width)
        if group.epilog:
            epilog = self.text("\n\n".join(group.epilog.split("\n\n")))
            self.console.print(Padding(Align(epilog, pad=False), 1))

    def param_help(self, param: TyperOption | TyperArgument) -> RenderableType:
        from rich.columns import Columns
        from rich.text import Text

        ctx = self.ctx
        items: list[RenderableType] = []
        envvar = getattr(param, "envvar", None)
        autoenv = getattr(param, "allow_from_autoenv", None) and ctx.auto_envvar_prefix is not None
        if envvar is None and autoenv and param.name:
            envvar = f"{ctx.auto_envvar_prefix}_{param.name.upper()}"
        if param.help:
            paragraphs = [
                p.replace("\n", " ").strip() if not p.startswith("\b") else "{}\n".format(p.strip("\b\n"))
                for p in param.help.split("\n\n")
            ]
            items.append(self.text("\n".join(paragraphs).strip()))
        if envvar and getattr(param, "show_envvar", None):
            shown = envvar if isinstance(envvar, str) else ", ".join(str(d) for d in envvar)
            items.append(Text(f"[env var: {shown}]", style=self.STYLE_OPTION_ENVVAR))
        default_value = param._extract_default_help_str(ctx=ctx)
        show_default_is_str = isinstance(param.show_default, str)
        if show_default_is_str or (default_value is not None and (param.show_default or ctx.show_default)):
            default = param._get_default_string(
                ctx=ctx, show_default_is_str=show_default_is_str, default_value=default_value
            )
            if default:
                items.append(Text(f"[default: {default}]", style=self.STYLE_OPTION_DEFAULT))
        if param.required:
            items.append(Text("[required]", style=self.STYLE_REQUIRED_LONG))
        return Columns(items)

    def print_params(self, title: str, params: list[_click.Parameter]) -> None:
        from rich.panel import Panel
        from rich.text import Text

        ctx = self.ctx
        rows: list[list[RenderableType]] = []
        required_marks: list[str | Text] = []
        for param in params:
            assert isinstance(param, TyperOption | TyperArgument)
            long: list[str] = []
            short: list[str] = []
            negative_long: list[str] = []
            negative_short: list[str] = []
            display_name = None
            if isinstance(param, TyperArgument):
                display_name = param.display_name_raw
                if param.metavar is None and param.nargs != 1:
                    display_name += "..."
            for opt in param.opts:
                (long if "--" in opt else short).append(
                    opt if "--" in opt or not display_name else display_name
                )
            for opt in param.secondary_opts:
                shown = opt if "--" in opt or not display_name else display_name
                (negative_long if "--" in opt else negative_short).append(shown)
            types = Text(style=self.STYLE_TYPES, overflow="fold")
            shown_type = param.display_type_rich(ctx=ctx)
            if shown_type is not None:
                types.append(shown_type)
            number_range = param._get_number_range_help_str()
            if number_range:
                types.append(f" [{number_range}]")
            required_marks.append(Text("*", style=self.STYLE_REQUIRED_SHORT) if param.required else "")
            rows.append(
                [
                    self.highlighter(",".join(long)),
                    self.highlighter(",".join(short)),
                    self.negative_highlighter(",".join(negative_long)),
                    self.negative_highlighter(",".join(negative_short)),
                    self.types_highlighter(types),
                    self.param_help(param),
                ]
            )
        if not rows:
            return
        if any(required_marks):
            rows = [[mark, *row] for mark, row in zip(required_marks, rows, strict=True)]
        table = _grid(highlight=True)
        for row in rows:
            table.add_row(*row)
        self.console.print(
            Panel(table, border_style=self.STYLE_BORDER, title=_markup(title), title_align="left")
        )

    def print_commands(self, title: str, commands: list[tuple[str, str, bool]], width: int) -> None:
        from rich.panel import Panel
        from rich.text import Text

        table = _grid(highlight=False)
        table.add_column(style=self.STYLE_COMMANDS_TABLE_FIRST_COLUMN, no_wrap=True, width=width)
        table.add_column("Description", justify="left", no_wrap=False, ratio=10)
        any_deprecated = any(deprecated for _, _, deprecated in commands)
        for name, help_text, deprecated in commands:
            first = inspect.cleandoc(help_text).split("\n\n")[0]
            if first.startswith("\b"):
                first = first.replace("\b\n", "")
            row: list[RenderableType | None] = [
                Text(name, style=self.STYLE_DEPRECATED_COMMAND if deprecated else ""),
                self.text(first.strip()),
            ]
            if any_deprecated:
                row.append(Text("(deprecated) ", style=self.STYLE_DEPRECATED) if deprecated else None)
            table.add_row(*row)
        self.console.print(
            Panel(table, border_style=self.STYLE_BORDER, title=_markup(title), title_align="left")
        )
