"""Shell completion: `tmuxish completion bash|zsh` prints a script; targets come from the server.

The scripts are generated from the argparse parser, so every subcommand and option the CLI has is
completed without a second list to keep up to date. Session ids and names come from the hidden
`tmuxish _complete-targets`, which asks the server (never starting one) and prints nothing when
none runs. Global options typed before the subcommand (-S, -L, ...) are passed on to it, so
targets come from the server the completed command would talk to.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field

#: Keys offered after `send TARGET` (tmux names; see tmuxish.keynames).
SEND_KEYS = (
    "Enter Tab Space Escape BSpace Up Down Left Right Home End PPage NPage IC DC BTab "
    "C-c C-d C-z C-l C-a C-e C-u C-w "
    "F1 F2 F3 F4 F5 F6 F7 F8 F9 F10 F11 F12"
)

#: Signals offered after `kill -s`.
SIGNALS = "HUP INT QUIT KILL TERM USR1 USR2 STOP CONT WINCH"

#: Seconds `_complete-targets` waits for the server: completion must never hang a shell.
TARGETS_TIMEOUT = 2.0


@dataclass
class CommandSpec:
    """What completion needs to know about one subcommand."""

    names: list[str]
    help: str
    #: Every option string (-d, --json, ...).
    options: list[str] = field(default_factory=list)
    #: Options that take a value, with the kind of value (see ``_kind``).
    values: dict[str, str] = field(default_factory=dict)
    #: Kinds of the positional arguments in order; the last repeats if ``repeat_last``.
    positionals: list[str] = field(default_factory=list)
    repeat_last: bool = False


@dataclass
class CliSpec:
    global_options: list[str]
    global_values: dict[str, str]
    commands: list[CommandSpec]


def _kind(action: argparse.Action) -> str:
    """``target``, ``command``, ``keys``, ``file``, ``dir``, ``choices:A B`` or ``none``."""
    if action.dest == "target":
        return "target"
    if action.nargs == argparse.REMAINDER:
        return "command"
    if action.dest == "keys":
        return "keys"
    if action.dest == "signal":
        return "signal"
    if action.choices:
        return "choices:" + " ".join(str(c) for c in action.choices)
    meta = str(action.metavar or "").upper()
    if meta == "DIR":
        return "dir"
    if meta in ("FILE", "PATH"):
        return "file"
    return "none"


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def spec_from_parser(parser: argparse.ArgumentParser) -> CliSpec:
    global_options: list[str] = []
    global_values: dict[str, str] = {}
    commands: list[CommandSpec] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            visible = {a.dest: a.help or "" for a in action._choices_actions}
            by_parser: dict[int, CommandSpec] = {}
            for name, sub in action.choices.items():
                key = id(sub)
                if key in by_parser:
                    by_parser[key].names.append(name)  # an alias
                    continue
                if name not in visible:
                    continue  # hidden (internal) commands are not offered
                spec = CommandSpec([name], visible[name])
                _fill(spec, sub)
                by_parser[key] = spec
                commands.append(spec)
        elif action.option_strings:
            if action.help != argparse.SUPPRESS:
                global_options.extend(action.option_strings)
            if _takes_value(action):
                for option in action.option_strings:
                    global_values[option] = _kind(action)
    return CliSpec(global_options, global_values, commands)


def _fill(spec: CommandSpec, parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if action.option_strings:
            if action.help != argparse.SUPPRESS:
                spec.options.extend(action.option_strings)
            if _takes_value(action):
                for option in action.option_strings:
                    spec.values[option] = _kind(action)
        else:
            spec.positionals.append(_kind(action))
            spec.repeat_last = action.nargs in ("+", "*", argparse.REMAINDER)


# -- bash ------------------------------------------------------------------------------------------

_SAFE = re.compile(r"^[A-Za-z0-9_.,:@%+=/-]*$")


def _q(text: str) -> str:
    """Quote for the shell (single quotes)."""
    if text and _SAFE.match(text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


def _bash_value_case(values: dict[str, str], indent: str) -> str:
    """Case arms completing an option's value; every arm returns."""
    by_kind: dict[str, list[str]] = {}
    for option, kind in values.items():
        by_kind.setdefault(kind, []).append(option)
    arms = []
    for kind, options in by_kind.items():
        arms.append(
            f"{indent}{'|'.join(_q(o) for o in options)}) _tmuxish_value {_q(kind)}; return;;"
        )
    return "\n".join(arms)


BASH_TEMPLATE = r"""# bash completion for tmuxish. Load it with:  eval "$(tmuxish completion bash)"
# or save it as ~/.local/share/bash-completion/completions/tmuxish

_tmuxish_run() {
    local prog=${COMP_WORDS[0]}
    [[ $prog == "~/"* ]] && prog=$HOME/${prog#"~/"}
    command "$prog" "${_tmuxish_globals[@]}" "$@" 2>/dev/null </dev/null
}

# Complete the current word as a value of some kind.
_tmuxish_value() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    case $1 in
        target) COMPREPLY=($(compgen -W "$(_tmuxish_run _complete-targets)" -- "$cur"));;
        keys) COMPREPLY=($(compgen -W "@KEYS@" -- "$cur"));;
        signal) COMPREPLY=($(compgen -W "@SIGNALS@" -- "$cur"));;
        command) mapfile -t COMPREPLY < <(compgen -c -- "$cur");;
        file) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -f -- "$cur");;
        dir) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -d -- "$cur");;
        choices:*) COMPREPLY=($(compgen -W "${1#choices:}" -- "$cur"));;
        *) COMPREPLY=();;
    esac
}

_tmuxish() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=""
    (( COMP_CWORD > 0 )) && prev=${COMP_WORDS[COMP_CWORD-1]}
    local i=1 w cmd="" cmd_index=0
    _tmuxish_globals=()
    COMPREPLY=()
    # Find the subcommand, collecting the global options before it.
    while (( i < COMP_CWORD )); do
        w=${COMP_WORDS[i]}
        case $w in
            @GLOBAL_VALUE_OPTS@)
                _tmuxish_globals+=("$w" "${COMP_WORDS[i+1]}"); (( i += 2 )); continue;;
            -*) _tmuxish_globals+=("$w"); (( i += 1 )); continue;;
            *) cmd=$w; cmd_index=$i; break;;
        esac
    done
    if [[ -z $cmd ]]; then
        case $prev in
@GLOBAL_VALUE_CASE@
        esac
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "@GLOBAL_OPTS@" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "@COMMANDS@" -- "$cur"))
        fi
        return
    fi

    local opts="" valopts="" repeat=0
    local -a pos=()
    case $cmd in
@COMMAND_CASE@
        *) return;;
    esac

    # An option's value?
    if [[ " $valopts " == *" $prev "* ]] && (( COMP_CWORD - 1 > cmd_index )); then
        case "$cmd $prev" in
@VALUE_CASE@
        esac
        return
    fi

    # Which positional argument is being completed?
    local n=0 dashdash=0 j
    for (( j = cmd_index + 1; j < COMP_CWORD; j++ )); do
        w=${COMP_WORDS[j]}
        if (( dashdash )); then (( n++ )); continue; fi
        if [[ ${pos[n]} == command && $w != -* ]]; then dashdash=1; (( n++ )); continue; fi
        if [[ $w == -- ]]; then dashdash=1; continue; fi
        if [[ $w == -?* ]]; then
            [[ " $valopts " == *" $w "* ]] && (( j++ ))
            continue
        fi
        (( n++ ))
    done
    local kind=none last=$(( ${#pos[@]} - 1 ))
    if (( n <= last )); then
        kind=${pos[n]}
    elif (( repeat && last >= 0 )); then
        kind=${pos[last]}
        [[ $kind == command ]] && kind=file
    fi
    if [[ $cur == -* ]] && (( ! dashdash )); then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi
    if [[ $kind == command ]] && (( dashdash )) && (( n > 0 )); then
        # Arguments of the program being started.
        [[ ${pos[n-1]} == command ]] && kind=file
    fi
    _tmuxish_value "$kind"
}

complete -F _tmuxish tmuxish
"""


def bash_script(parser: argparse.ArgumentParser) -> str:
    spec = spec_from_parser(parser)
    global_value_opts = "|".join(_q(o) for o in spec.global_values) or "--no-such-option--"
    command_arms = []
    value_arms = []
    for command in spec.commands:
        pattern = "|".join(_q(n) for n in command.names)
        positionals = " ".join(_q(k) for k in command.positionals)
        command_arms.append(
            f"        {pattern})\n"
            f"            opts={_q(' '.join(command.options))}\n"
            f"            valopts={_q(' '.join(command.values))}\n"
            f"            pos=({positionals}); repeat={int(command.repeat_last)};;"
        )
        for option, kind in command.values.items():
            for name in command.names:
                value_arms.append(
                    f"            {_q(name + ' ' + option)}) _tmuxish_value {_q(kind)};;"
                )
    names = [n for c in spec.commands for n in c.names]
    return (
        BASH_TEMPLATE.replace("@KEYS@", SEND_KEYS)
        .replace("@SIGNALS@", SIGNALS)
        .replace("@GLOBAL_VALUE_OPTS@", global_value_opts)
        .replace("@GLOBAL_VALUE_CASE@", _bash_value_case(spec.global_values, " " * 12))
        .replace("@GLOBAL_OPTS@", " ".join(spec.global_options))
        .replace("@COMMANDS@", " ".join(names))
        .replace("@COMMAND_CASE@", "\n".join(command_arms))
        .replace("@VALUE_CASE@", "\n".join(value_arms) or "            *) ;;")
    )


# -- zsh -------------------------------------------------------------------------------------------


def _zdesc(name: str, text: str) -> str:
    """One ``name:description`` entry for _describe, single-quoted."""
    return _q(name.replace(":", "\\:") + ":" + " ".join(text.split()))


ZSH_TEMPLATE = r"""#compdef tmuxish
# zsh completion for tmuxish. Load it after compinit with:  eval "$(tmuxish completion zsh)"
# or save it as _tmuxish in a directory on $fpath.

_tmuxish_value() {
    local -a items
    case $1 in
        (target)
            items=(${(f)"$(command ${~words[1]} $_tmuxish_globals \
                _complete-targets 2>/dev/null </dev/null)"})
            compadd -a items;;
        (keys) items=(@KEYS@); compadd -a items;;
        (signal) items=(@SIGNALS@); compadd -a items;;
        (command) _command_names -e;;
        (file) _files;;
        (dir) _files -/;;
        (choices:*) items=(${=${1#choices:}}); compadd -a items;;
        (*) return 1;;
    esac
}

_tmuxish() {
    local cur=${words[CURRENT]} prev=${words[CURRENT-1]}
    local i=2 w cmd="" cmd_index=0
    typeset -ga _tmuxish_globals
    _tmuxish_globals=()
    while (( i < CURRENT )); do
        w=${words[i]}
        case $w in
            (@GLOBAL_VALUE_OPTS@)
                _tmuxish_globals+=($w ${words[i+1]}); (( i += 2 )); continue;;
            (-*) _tmuxish_globals+=($w); (( i += 1 )); continue;;
            (*) cmd=$w; cmd_index=$i; break;;
        esac
    done
    if [[ -z $cmd ]]; then
        case $prev in
@GLOBAL_VALUE_CASE@
        esac
        if [[ $cur == -* ]]; then
            local -a gopts
            gopts=(@GLOBAL_OPTS@)
            _describe -t options 'tmuxish option' gopts
        else
            local -a cmds
            cmds=(@COMMANDS@)
            _describe -t commands 'tmuxish command' cmds
        fi
        return
    fi

    local -a opts valopts pos
    local repeat=0
    case $cmd in
@COMMAND_CASE@
        (*) return 1;;
    esac

    if (( ${valopts[(Ie)$prev]} )) && (( CURRENT - 1 > cmd_index )); then
        case "$cmd $prev" in
@VALUE_CASE@
        esac
        return
    fi

    local n=1 dashdash=0 j
    for (( j = cmd_index + 1; j < CURRENT; j++ )); do
        w=${words[j]}
        if (( dashdash )); then (( n++ )); continue; fi
        if [[ ${pos[n]} == command && $w != -* ]]; then dashdash=1; (( n++ )); continue; fi
        if [[ $w == -- ]]; then dashdash=1; continue; fi
        if [[ $w == -?* ]]; then
            (( ${valopts[(Ie)$w]} )) && (( j++ ))
            continue
        fi
        (( n++ ))
    done
    local kind=none
    if (( n <= $#pos )); then
        kind=${pos[n]}
    elif (( repeat && $#pos )); then
        kind=${pos[-1]}
        [[ $kind == command ]] && kind=file
    fi
    if [[ $cur == -* ]] && (( ! dashdash )); then
        _describe -t options 'option' opts
        return
    fi
    if [[ $kind == command ]] && (( dashdash && n > 1 )) && [[ ${pos[n-1]} == command ]]; then
        kind=file
    fi
    _tmuxish_value $kind
}

if (( $+functions[compdef] )); then
    compdef _tmuxish tmuxish
else
    print -u2 "tmuxish completion: run 'autoload -Uz compinit && compinit' first"
fi
"""


def zsh_script(parser: argparse.ArgumentParser) -> str:
    spec = spec_from_parser(parser)
    helps = _option_helps(parser)
    global_value_opts = "|".join(_q(o) for o in spec.global_values) or "--no-such-option--"
    command_arms = []
    value_arms = []
    sub_helps = _subcommand_option_helps(parser)
    for command in spec.commands:
        pattern = "|".join(_q(n) for n in command.names)
        option_helps = sub_helps.get(command.names[0], {})
        opts = " ".join(_zdesc(o, option_helps.get(o, "")) for o in command.options)
        command_arms.append(
            f"        ({pattern})\n"
            f"            opts=({opts})\n"
            f"            valopts=({' '.join(_q(o) for o in command.values)})\n"
            f"            pos=({' '.join(_q(k) for k in command.positionals)})"
            f"; repeat={int(command.repeat_last)};;"
        )
        for option, kind in command.values.items():
            for name in command.names:
                value_arms.append(
                    f"            ({_q(name + ' ' + option)}) _tmuxish_value {_q(kind)};;"
                )
    global_arms = []
    by_kind: dict[str, list[str]] = {}
    for option, kind in spec.global_values.items():
        by_kind.setdefault(kind, []).append(option)
    for kind, options in by_kind.items():
        pattern = "|".join(_q(o) for o in options)
        global_arms.append(f"            ({pattern}) _tmuxish_value {_q(kind)}; return;;")
    commands = [_zdesc(n, c.help) for c in spec.commands for n in c.names]
    return (
        ZSH_TEMPLATE.replace("@KEYS@", SEND_KEYS)
        .replace("@SIGNALS@", SIGNALS)
        .replace("@GLOBAL_VALUE_OPTS@", global_value_opts)
        .replace("@GLOBAL_VALUE_CASE@", "\n".join(global_arms))
        .replace(
            "@GLOBAL_OPTS@", " ".join(_zdesc(o, helps.get(o, "")) for o in spec.global_options)
        )
        .replace("@COMMANDS@", " ".join(commands))
        .replace("@COMMAND_CASE@", "\n".join(command_arms))
        .replace("@VALUE_CASE@", "\n".join(value_arms) or "            (*) ;;")
    )


def _option_helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    helps: dict[str, str] = {}
    for action in parser._actions:
        for option in action.option_strings:
            text = action.help if action.help and action.help != argparse.SUPPRESS else ""
            helps[option] = text.replace("%(default)s", str(action.default)).replace("%%", "%")
    return helps


def _subcommand_option_helps(parser: argparse.ArgumentParser) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[name] = _option_helps(sub)
    return out


# -- commands --------------------------------------------------------------------------------------


def complete_targets(args: argparse.Namespace) -> int:
    """Print every session id and name, one a line; nothing (and status 0) if none answers."""
    from tmuxish.client import commands
    from tmuxish.errors import TmuxishError

    try:
        with commands._client(args) as client:
            client.timeout = TARGETS_TIMEOUT
            sessions = client.sessions()
    except (TmuxishError, OSError):
        return 0
    lines = []
    for session in sessions:
        lines.append(str(session.id))
        if session.name:
            lines.append(session.name)
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


def run(args: argparse.Namespace) -> int:
    """`tmuxish completion SHELL` and the hidden `tmuxish _complete-targets`."""
    if args.command == "_complete-targets":
        return complete_targets(args)
    from tmuxish.cli import build_parser

    parser = build_parser()
    script = bash_script(parser) if args.shell == "bash" else zsh_script(parser)
    sys.stdout.write(script)
    return 0
