"""The shell integration files: small rc files that make bash and zsh emit the OSC 133 marks
server/shellhook.py follows, without touching the user's own rc files (they are still read).

bash gets ``--rcfile``; zsh gets a ``ZDOTDIR`` whose ``.zshenv`` puts the user's ``ZDOTDIR`` back
and reads their files. Every mark carries the session's token (``TMUXISH_MARK``, read and unset
before the user's files run), so marks in a program's output are not taken for the shell's.
"""

from __future__ import annotations

import os

BASH_RC = r"""# tmuxish shell integration for bash: the user's usual start-up, then OSC 133 marks.
# The marks carry the session's token: a program's output that has marks of its own (a nested
# shell's, a file's) cannot end a run or a command.
__tmuxish_mark=${TMUXISH_MARK-}; unset TMUXISH_MARK
if [ -r /etc/bash.bashrc ]; then . /etc/bash.bashrc; fi
if [ -r ~/.bashrc ]; then . ~/.bashrc; fi
__tmuxish_end() {
    local s=$?
    if [ -n "$__tmuxish_ran" ]; then
        printf '\033]133;D;%s;tmuxish=%s\007' "$s" "$__tmuxish_mark"
    fi
    __tmuxish_ran=
    return $s
}
__tmuxish_prompt() {
    local s=$?
    printf '\033]133;A;tmuxish=%s\007' "$__tmuxish_mark"
    local t="tmuxish=$__tmuxish_mark"
    case "$PS1" in *'133;B'*) ;; *) PS1="$PS1"'\[\033]133;B;'"$t"'\007\]' ;; esac
    # A continuation prompt says so: a run whose line is incomplete (an open quote) is told.
    case "$PS2" in *'133;A;k=s'*) ;; *) PS2='\[\033]133;A;k=s;'"$t"'\007\]'"$PS2" ;; esac
    return $s
}
# The D mark comes first (what the user's hooks print is not the command's output), the A mark
# last (after what they print, and after they set PS1).
if (( BASH_VERSINFO[0] > 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] >= 1) )); then
    # An array: each element runs on its own, so a broken one of the user's cannot stop ours.
    PROMPT_COMMAND=(__tmuxish_end "${PROMPT_COMMAND[@]}" __tmuxish_prompt)
else
    PROMPT_COMMAND="__tmuxish_end"$'\n'"${PROMPT_COMMAND:+$PROMPT_COMMAND$'\n'}__tmuxish_prompt"
fi
PS0="${PS0}"'${__tmuxish_ran:$((__tmuxish_ran=1)):0}\033]133;C;tmuxish=${__tmuxish_mark}\007'
"""

ZSH_ENV = r"""# tmuxish shell integration for zsh: ZDOTDIR back, the user's files, OSC 133 marks.
if [[ -n ${TMUXISH_ZDOTDIR+x} ]]; then ZDOTDIR=$TMUXISH_ZDOTDIR; else unset ZDOTDIR; fi
unset TMUXISH_ZDOTDIR
__tmuxish_mark=${TMUXISH_MARK-}; unset TMUXISH_MARK  # see the bash integration
[[ -r ${ZDOTDIR:-$HOME}/.zshenv ]] && . ${ZDOTDIR:-$HOME}/.zshenv
if [[ -o interactive ]]; then
    # zsh prints PROMPT_SP (the partial-line mark) before precmd, so it would land inside the
    # command's output: it is turned off, and printed by precmd after the D mark instead.
    if [[ -o prompt_sp ]]; then unsetopt prompt_sp; __tmuxish_sp=1; fi
    __tmuxish_precmd() {
        local s=$?
        [[ -n $__tmuxish_ran ]] && printf '\033]133;D;%s;tmuxish=%s\007' $s $__tmuxish_mark
        __tmuxish_ran=
        if [[ -o prompt_sp ]]; then unsetopt prompt_sp; __tmuxish_sp=1; fi
        if [[ -n $__tmuxish_sp && -o prompt_cr ]]; then
            local m=${PROMPT_EOL_MARK-%B%S%#%s%b}
            local w=${#${(%)${m//\%[BbSsUu]/}}}
            printf '%s%*s\r%*s\r' "${(%)m}" $((COLUMNS - w)) '' $w ''
        fi
        printf '\033]133;A;tmuxish=%s\007' $__tmuxish_mark
        [[ $PS2 == *'133;A;k=s'* ]] || PS2=$'%{\e]133;A;k=s;tmuxish='$__tmuxish_mark$'\a%}'$PS2
    }
    __tmuxish_preexec() { __tmuxish_ran=1; printf '\033]133;C;tmuxish=%s\007' $__tmuxish_mark; }
    typeset -ga precmd_functions preexec_functions
    precmd_functions=(__tmuxish_precmd $precmd_functions)
    preexec_functions+=(__tmuxish_preexec)
fi
"""


def integration_dir(socket_path: str) -> str:
    """Where the server keeps its rc files (beside its socket, private like it)."""
    return f"{socket_path}.shell"


def write_files(directory: str) -> None:
    os.makedirs(os.path.join(directory, "zsh"), mode=0o700, exist_ok=True)
    for name, text in (("bashrc", BASH_RC), (os.path.join("zsh", ".zshenv"), ZSH_ENV)):
        path = os.path.join(directory, name)
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)


def integrate(
    command: list[str], env: dict[str, str], directory: str, token: str
) -> tuple[list[str], dict[str, str], str | None]:
    """``command`` and ``env`` with the integration for an interactive bash or zsh started
    without arguments (or with just ``-i``); which shell got it, or None. ``token`` goes into
    the shell's C and D marks (see ``ShellTracker.mark_token``)."""
    if not command or any(a not in ("-i",) for a in command[1:]):
        return command, env, None
    shell = os.path.basename(command[0])
    try:
        if shell == "bash":
            write_files(directory)
            rc = os.path.join(directory, "bashrc")
            return [command[0], "--rcfile", rc, "-i"], {**env, "TMUXISH_MARK": token}, "bash"
        if shell == "zsh":
            write_files(directory)
            env = {**env, "TMUXISH_MARK": token}
            if "ZDOTDIR" in env:
                env["TMUXISH_ZDOTDIR"] = env["ZDOTDIR"]
            env["ZDOTDIR"] = os.path.join(directory, "zsh")
            return command, env, "zsh"
    except OSError:
        return command, env, None
    return command, env, None
